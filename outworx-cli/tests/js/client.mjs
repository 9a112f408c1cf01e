// Svix's official JavaScript client (npm `svix`, pinned in package.json) against a real
// `outworx serve --deliver`, in a smaller run than the Python one (svix_client.py):
//   node client.mjs SERVER_URL KEY RECEIVER_URL
// Prints `svix-js: all checks passed` when every check held.
import assert from 'node:assert/strict';
import { Svix } from 'svix';

const [server, key, receiver] = process.argv.slice(2);
const svix = new Svix(key, { serverUrl: server });

const expectStatus = async (status, call) => {
  try {
    await call();
  } catch (e) {
    assert.equal(e.code, status, `expected ${status}, got ${e.code}: ${JSON.stringify(e.body)}`);
    return e;
  }
  assert.fail(`expected ${status}, the call succeeded`);
};

await svix.eventType.create({ name: 'invoice.paid', description: 'An invoice was paid' });
await expectStatus(409, () => svix.eventType.create({ name: 'invoice.paid', description: 'again' }));
const app = await svix.application.getOrCreate({ name: 'JS', uid: 'js-app' });
const ep = await svix.endpoint.create('js-app', { url: `${receiver}/js`, eventTypes: ['invoice.paid'], uid: 'js-main' });
assert.deepEqual(ep.eventTypes, ['invoice.paid']);
assert.equal((await svix.endpoint.get('js-app', 'js-main')).id, ep.id);
const patched = await svix.endpoint.patch('js-app', ep.id, { description: 'patched' });
assert.equal(patched.description, 'patched');
const msg = await svix.message.create('js-app', { eventType: 'invoice.paid', payload: { id: 'in_1' }, eventId: 'js-evt-1' });
await expectStatus(409, () => svix.message.create('js-app', { eventType: 'invoice.paid', payload: {}, eventId: 'js-evt-1' }));
// Delivered: its attempt is listed.
let attempts = [];
for (let i = 0; i < 200 && attempts.length === 0; i++) {
  attempts = (await svix.messageAttempt.listByMsg('js-app', msg.id)).data;
  if (!attempts.length) await new Promise((r) => setTimeout(r, 50));
}
assert.equal(attempts[0].responseStatusCode, 200);
await svix.messageAttempt.resend('js-app', msg.id, ep.id);
const secret = await svix.endpoint.getSecret('js-app', ep.id);
assert.ok(secret.key.startsWith('whsec_'));
await svix.endpoint.rotateSecret('js-app', ep.id, {});
assert.notEqual((await svix.endpoint.getSecret('js-app', ep.id)).key, secret.key);
const access = await svix.authentication.appPortalAccess('js-app', {});
assert.ok(access.token.startsWith('opt_'));
await svix.endpoint.delete('js-app', ep.id);
await expectStatus(404, () => svix.endpoint.get('js-app', ep.id));
await svix.application.delete(app.id);
console.log('svix-js: all checks passed');
