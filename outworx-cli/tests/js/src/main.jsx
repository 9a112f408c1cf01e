// A page built only from svix-react's hooks (SvixProvider, useEndpoints, useNewEndpoint,
// useMessages, useMessageAttempts, useAttemptFunctions), as a sender's own portal would be,
// pointed at `outworx serve` with an app-scoped token: `#token=..&app=..&server=..`.
import { useState } from 'react';
import { createRoot } from 'react-dom/client';
import {
  SvixProvider, useAttemptFunctions, useEndpoints, useMessageAttempts, useMessages, useNewEndpoint,
} from 'svix-react';

const params = new URLSearchParams(location.hash.slice(1));
const options = { serverUrl: params.get('server') }; // stable: one client for the page

function Endpoints() {
  const eps = useEndpoints({ limit: 50 });
  const ne = useNewEndpoint();
  const [status, setStatus] = useState('');
  const create = async () => {
    const r = await ne.createEndpoint();
    setStatus(r.error ? `error: ${r.error.message}` : `created ${r.endpoint.id}`);
    eps.reload();
  };
  return (
    <section>
      <h2>Endpoints</h2>
      {eps.error && <p id="endpoints-error">{String(eps.error)}</p>}
      <ul id="endpoints">{(eps.data || []).map((e) => <li key={e.id}>{e.url}</li>)}</ul>
      <input id="url" value={ne.url.value} onChange={(ev) => ne.url.setValue(ev.target.value)} />
      <button id="create" onClick={create}>Add</button>
      <p id="create-status">{status}</p>
    </section>
  );
}

function Resend({ attempt }) {
  const { resendAttempt } = useAttemptFunctions(attempt);
  const [done, setDone] = useState(false);
  return <button className="resend" onClick={() => resendAttempt().then(() => setDone(true))}>{done ? 'resent' : 'resend'}</button>;
}

function Attempts({ msgId }) {
  const attempts = useMessageAttempts(msgId, { limit: 10 });
  return (
    <ul className="attempts">
      {(attempts.data || []).map((a) => (
        <li key={a.id}>{a.responseStatusCode} <Resend attempt={a} /></li>
      ))}
    </ul>
  );
}

function Messages() {
  const msgs = useMessages({ limit: 2 });
  return (
    <section>
      <h2>Messages</h2>
      {msgs.error && <p id="messages-error">{String(msgs.error)}</p>}
      <ul id="messages">
        {(msgs.data || []).map((m) => <li key={m.id} data-id={m.id}>{m.eventType} <Attempts msgId={m.id} /></li>)}
      </ul>
      <button id="next" disabled={!msgs.hasNextPage} onClick={msgs.nextPage}>next</button>
      <button id="prev" disabled={!msgs.hasPrevPage} onClick={msgs.prevPage}>prev</button>
    </section>
  );
}

createRoot(document.getElementById('root')).render(
  <SvixProvider token={params.get('token')} appId={params.get('app')} options={options}>
    <Endpoints />
    <Messages />
  </SvixProvider>,
);
