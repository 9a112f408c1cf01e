//! The routes. Each handler takes the namespace first (401), then resolves the application
//! in it (404, exactly as a missing one for another namespace's), then reads its body
//! (422): Svix's order.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{delete, get, post};
use outworx_hooks_queue::on_pool;
use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{self, AppRow, EventTypeRow, MessageRow, Page, SCAN};
use super::wire::{self, Metadata};
use super::{Api, Namespace, Shared, SvixError, answer, query, read_json};
use crate::send::model::NewMessage;
use crate::send::store::endpoints::{EndpointChange, Headers};
use crate::send::{DeliveryFilter, DeliveryStatus, Endpoint, NewEndpoint, Scope, SendError, ids};

impl From<sqlx::Error> for SvixError {
    fn from(e: sqlx::Error) -> Self {
        SvixError::from(SendError::from(e))
    }
}

/// Runs `$body` on one connection of the outbox, with the Svix store's queries as `$m`.
macro_rules! db {
    ($api:expr, |$c:ident, $m:ident| $body:expr) => {
        on_pool!(
            &$api.emitter.shared.outbox.pool,
            conn,
            crate::send::svix::store,
            |$c, $m| $body
        )
    };
}

/// Runs `$body` in a write transaction of the outbox.
macro_rules! tx {
    ($api:expr, |$c:ident, $m:ident| $body:expr) => {
        on_pool!(
            &$api.emitter.shared.outbox.pool,
            tx,
            crate::send::svix::store,
            |$c, $m| $body
        )
    };
}

pub(super) fn routes() -> Router<Arc<Api>> {
    use super::Access::{App, AppRead, Namespace as Ns, Public, ReadAll};
    let r = Routes(Router::new());
    r.at("/health", Public, get(health))
        .at("/health/ping", Public, get(ping))
        .at("/app", Ns, get(list_apps).post(create_app))
        .at(
            "/app/{app}",
            AppRead,
            get(get_app)
                .put(put_app)
                .patch(patch_app)
                .delete(delete_app),
        )
        .at(
            "/app/{app}/endpoint",
            App,
            get(list_endpoints).post(create_endpoint),
        )
        .at(
            "/app/{app}/endpoint/{ep}",
            App,
            get(get_endpoint)
                .put(put_endpoint)
                .patch(patch_endpoint)
                .delete(delete_endpoint),
        )
        .at("/app/{app}/endpoint/{ep}/secret", App, get(get_secret))
        .at(
            "/app/{app}/endpoint/{ep}/secret/rotate",
            App,
            post(rotate_secret),
        )
        .at("/app/{app}/endpoint/{ep}/stats", App, get(endpoint_stats))
        // The portal's test event (Svix keeps it to the namespace's token).
        .at(
            "/app/{app}/endpoint/{ep}/send-example",
            App,
            post(send_example),
        )
        .at("/app/{app}/endpoint/{ep}/recover", App, post(recover))
        .at(
            "/app/{app}/endpoint/{ep}/headers",
            App,
            get(get_headers).put(put_headers).patch(patch_headers),
        )
        .at("/app/{app}/endpoint/{ep}/msg", App, get(endpoint_messages))
        .at(
            "/event-type",
            ReadAll,
            get(list_event_types).post(create_event_type),
        )
        .at(
            "/event-type/{name}",
            ReadAll,
            get(get_event_type)
                .put(put_event_type)
                .patch(patch_event_type)
                .delete(delete_event_type),
        )
        .at(
            "/app/{app}/msg",
            AppRead,
            get(list_messages).post(create_message),
        )
        .at("/app/{app}/msg/{msg}", App, get(get_message))
        .at("/app/{app}/msg/{msg}/content", Ns, delete(expunge_message))
        .at(
            "/app/{app}/msg/{msg}/endpoint",
            App,
            get(message_destinations),
        )
        .at(
            "/app/{app}/msg/{msg}/endpoint/{ep}/resend",
            App,
            post(resend),
        )
        .at(
            "/app/{app}/msg/{msg}/endpoint/{ep}/attempt",
            App,
            get(attempts_of_message_endpoint),
        )
        .at(
            "/app/{app}/msg/{msg}/attempt",
            App,
            get(attempts_of_message),
        )
        .at(
            "/app/{app}/msg/{msg}/attempt/{attempt}",
            App,
            get(get_attempt),
        )
        .at(
            "/app/{app}/msg/{msg}/attempt/{attempt}/content",
            Ns,
            delete(expunge_attempt),
        )
        .at(
            "/app/{app}/attempt/endpoint/{ep}",
            App,
            get(attempts_of_endpoint),
        )
        .at(
            "/app/{app}/attempt/msg/{msg}",
            App,
            get(attempts_of_message),
        )
        .at("/auth/app-portal-access/{app}", Ns, post(portal_access))
        .at("/auth/app/{app}/expire-all", Ns, post(expire_all))
        .0
}

/// Each route with who may call it ([`super::Access`], carried to the checks as a request
/// extension, whatever prefix the router is mounted under), and also with a trailing slash
/// (Svix trims it; its clients never follow a redirect).
struct Routes(Router<Arc<Api>>);

impl Routes {
    fn at(
        self,
        path: &str,
        access: super::Access,
        method: axum::routing::MethodRouter<Arc<Api>>,
    ) -> Self {
        let method = method.layer(axum::Extension(access));
        Routes(
            self.0
                .route(path, method.clone())
                .route(&format!("{path}/"), method),
        )
    }
}

/// Path parameters; one that does not decode is a 404, as a missing item.
struct P<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = SvixError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, SvixError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|_| SvixError::not_found())
    }
}

#[derive(Deserialize)]
struct AppPath {
    app: String,
}

#[derive(Deserialize)]
struct EpPath {
    app: String,
    ep: String,
}

#[derive(Deserialize)]
struct MsgPath {
    app: String,
    msg: String,
}

#[derive(Deserialize)]
struct MsgEpPath {
    app: String,
    msg: String,
    ep: String,
}

#[derive(Deserialize)]
struct AttemptPath {
    app: String,
    msg: String,
    attempt: String,
}

#[derive(Deserialize)]
struct NamePath {
    name: String,
}

/// The query string of a request: the last value of each name, and every pair (for the
/// names that repeat).
struct Q(HashMap<String, String>, Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Q {
    type Rejection = SvixError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, SvixError> {
        let pairs = query(parts.uri.query());
        Ok(Q(pairs.iter().cloned().collect(), pairs))
    }
}

impl Q {
    fn flag(&self, name: &str, default: bool) -> Result<bool, SvixError> {
        match self.0.get(name).map(String::as_str) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(bad_query(name)),
        }
    }

    fn time(&self, name: &str) -> Result<Option<i64>, SvixError> {
        self.0
            .get(name)
            .map(|v| wire::parse_time(v).ok_or_else(|| bad_query(name)))
            .transpose()
    }

    fn int(&self, name: &str) -> Result<Option<i64>, SvixError> {
        self.0
            .get(name)
            .map(|v| v.parse::<i64>().map_err(|_| bad_query(name)))
            .transpose()
    }

    /// `event_types=a,b` (also `event_types[]=a&event_types[]=b`), as Svix reads it: at
    /// most 64 names.
    fn event_types(&self) -> Result<Option<std::collections::HashSet<String>>, SvixError> {
        let mut out = std::collections::HashSet::new();
        for (k, v) in &self.1 {
            if k == "event_types" || k.starts_with("event_types[") {
                out.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
            }
            if out.len() > crate::send::limits::MAX_PATTERNS {
                return Err(SvixError::invalid(
                    &["query", "event_types"],
                    format!("at most {} event types", crate::send::limits::MAX_PATTERNS),
                ));
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// The page asked for: `limit` (default 50, at most 250), `iterator` (`-` before it:
    /// the page before).
    fn page(&self) -> Result<ListParams, SvixError> {
        let limit = match self.0.get("limit") {
            None => 50,
            Some(v) => v.parse::<u64>().map_err(|_| bad_query("limit"))?,
        };
        if limit > 250 {
            return Err(SvixError::invalid(
                &["query", "limit"],
                "Given limit must not exceed 250",
            ));
        }
        let (from, back) = match self.0.get("iterator").filter(|s| !s.is_empty()) {
            Some(it) => match it.strip_prefix('-') {
                Some(rest) => (Some(rest.to_owned()), true),
                None => (Some(it.clone()), false),
            },
            None => (None, false),
        };
        Ok(ListParams {
            limit: i64::try_from(limit).unwrap_or(250),
            from,
            back,
        })
    }

    /// `order=ascending|descending` (the list's default otherwise).
    fn ascending(&self, default: bool) -> Result<bool, SvixError> {
        match self.0.get("order").map(String::as_str) {
            None => Ok(default),
            Some("ascending") => Ok(true),
            Some("descending") => Ok(false),
            Some(_) => Err(bad_query("order")),
        }
    }

    /// Refuses a filter this list cannot apply, rather than ignoring it.
    fn refuse(&self, names: &[&str]) -> Result<(), SvixError> {
        for name in names {
            if self
                .0
                .keys()
                .any(|k| k == name || k.starts_with(&format!("{name}[")))
            {
                return Err(SvixError::invalid(
                    &["query", name],
                    format!("`{name}` is not supported on this list by outworx serve"),
                ));
            }
        }
        Ok(())
    }
}

fn bad_query(name: &str) -> SvixError {
    SvixError::bad_request(
        "generic_error",
        format!("Failed to deserialize query string: invalid value for `{name}`"),
    )
}

struct ListParams {
    limit: i64,
    from: Option<String>,
    back: bool,
}

impl ListParams {
    fn page(&self, ascending: bool) -> Page<'_> {
        Page {
            from: self.from.as_deref(),
            back: self.back,
            ascending,
            rows: self.limit + 1,
        }
    }

    /// The page from the rows read (`limit + 1` at most, in the read's order): whether it
    /// is the last, and the rows in the list's order.
    fn finish<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let done = i64::try_from(rows.len()).unwrap_or(i64::MAX) <= self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(0));
        if self.back {
            rows.reverse();
        }
        (rows, done)
    }
}

/// Svix's `ListResponse`: `iterator` always there (the last item's, or `null`),
/// `prevIterator` (`-` and the first item's) only with data.
#[derive(serde::Serialize)]
struct ListOut<T> {
    data: Vec<T>,
    iterator: Option<String>,
    #[serde(rename = "prevIterator", skip_serializing_if = "Option::is_none")]
    prev_iterator: Option<String>,
    done: bool,
}

fn list<T>(data: Vec<T>, first: Option<String>, last: Option<String>, done: bool) -> ListOut<T> {
    ListOut {
        data,
        iterator: last,
        prev_iterator: first.map(|f| format!("-{f}")),
        done,
    }
}

/// A page cut from rows read from the cursor in one direction (`limit + 1` of them, or a
/// filtered page's scan), some filtered out: the rows in the list's order, whether it is the
/// last page, and where the next page (`last`) and the one before (`first`) start.
struct Cut<T> {
    rows: Vec<T>,
    done: bool,
    first: Option<String>,
    last: Option<String>,
}

fn cut<T>(
    lp: &ListParams,
    scanned: Vec<T>,
    read: i64,
    keep: impl Fn(&T) -> bool,
    id: impl Fn(&T) -> String,
) -> Cut<T> {
    let exhausted = i64::try_from(scanned.len()).unwrap_or(i64::MAX) < read;
    // The furthest row read from the cursor: where a page the scan ran out on goes on from.
    let furthest = scanned.last().map(&id);
    let picked: Vec<T> = scanned.into_iter().filter(|r| keep(r)).collect();
    let (rows, fits) = lp.finish(picked);
    let full = !fits;
    let done = fits && exhausted;
    // The far end of the page from the cursor: its last row read when it is full, else
    // the last row the scan read.
    let far = if full {
        if lp.back { rows.first() } else { rows.last() }.map(&id)
    } else {
        furthest
    };
    let (first, last) = if lp.back {
        (far, rows.last().map(&id))
    } else {
        (rows.first().map(&id), far)
    };
    Cut {
        rows,
        done,
        first,
        last,
    }
}

impl<T> Cut<T> {
    /// Keeps the `n` rows nearest the cursor (a page over its byte budget); the others come
    /// on the next page.
    fn keep_nearest(&mut self, n: usize, back: bool, id: impl Fn(&T) -> String) {
        if n >= self.rows.len() {
            return;
        }
        if back {
            self.rows.drain(..self.rows.len() - n);
            self.first = self.rows.first().map(&id);
        } else {
            self.rows.truncate(n);
            self.last = self.rows.last().map(&id);
        }
        self.done = false;
    }
}

/// Most payload bytes one page of messages answers: past it the page ends early
/// (`done: false`), so a page of 250 messages of 1 MiB never loads 250 MiB.
const PAGE_CONTENT_BYTES: usize = 8 << 20;

/// Reads the payloads of `rows` (an application's messages, in the page's order) nearest
/// the cursor first, up to [`PAGE_CONTENT_BYTES`] (at least one): how many rows got theirs.
async fn fill_payloads(
    api: &Api,
    owner: &str,
    rows: &mut [MessageRow],
    back: bool,
) -> Result<usize, SvixError> {
    let mut bytes = 0usize;
    let n = rows.len();
    for k in 0..n {
        let i = if back { n - 1 - k } else { k };
        if k > 0 && bytes >= PAGE_CONTENT_BYTES {
            return Ok(k);
        }
        let id = rows[i].id.clone();
        let m = db!(api, |c, db| db::message(c, owner, &id, true).await?);
        let payload = m.and_then(|m| m.payload).unwrap_or_else(|| "{}".to_owned());
        bytes += payload.len();
        rows[i].payload = Some(payload);
    }
    Ok(n)
}

/// A namespace's application named by id or uid, if there is one.
pub(super) async fn app_row(api: &Api, ns: &str, id: &str) -> Result<Option<AppRow>, SvixError> {
    Ok(db!(api, |c, db| db::app(c, ns, id).await?))
}

async fn app_of(api: &Api, ns: &str, id: &str) -> Result<AppRow, SvixError> {
    let app = db!(api, |c, db| db::app(c, ns, id).await?);
    app.ok_or_else(SvixError::not_found)
}

async fn endpoint_of(api: &Api, app: &AppRow, ep: &str) -> Result<Endpoint, SvixError> {
    let row = on_pool!(
        &api.emitter.shared.outbox.pool,
        conn,
        crate::send::store::endpoints,
        |c, db| db::endpoint_by_id_or_uid(c, &app.id, ep).await?
    );
    row.map(|r| r.endpoint).ok_or_else(SvixError::not_found)
}

async fn message_of(
    api: &Api,
    app: &AppRow,
    msg: &str,
    with_payload: bool,
) -> Result<MessageRow, SvixError> {
    let row = db!(api, |c, db| db::message(c, &app.id, msg, with_payload)
        .await?);
    row.ok_or_else(SvixError::not_found)
}

/// A small body that may be left empty (Svix's clients send none, or `{}`, for a rotation or
/// a portal link): at most 64 KiB, its defaults when empty.
async fn read_optional_json<T: serde::de::DeserializeOwned + Default>(
    body: Body,
) -> Result<T, SvixError> {
    let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 * 1024))
        .await
        .map_err(|_| SvixError::invalid(&["body"], "the body is over 64 KiB"))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::parse_json(&bytes)
}

/// A 200 holding a secret (a signing key, a token): never kept for an idempotent replay,
/// never cached by anything between.
fn secret_answer(body: Value) -> Response {
    let mut r = answer(StatusCode::OK, body);
    r.extensions_mut().insert(super::NoStore);
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

fn now(api: &Api) -> i64 {
    api.emitter.now()
}

// ---- health ----

async fn health(State(api): Shared) -> Response {
    let ok = ping_db(&api).await.is_ok();
    let status = if ok { "ok" } else { "error" };
    let body = json!({
        "database": {"status": status},
        "queue": {"status": status},
        "cache": {"status": "ok"},
    });
    answer(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        },
        body,
    )
}

async fn ping_db(api: &Api) -> Result<(), SvixError> {
    db!(api, |c, db| db::ping(c).await?);
    Ok(())
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

// ---- applications ----

async fn list_apps(
    State(api): Shared,
    Namespace(ns): Namespace,
    q: Q,
) -> Result<Response, SvixError> {
    let p = q.page()?;
    let ascending = q.ascending(true)?;
    let rows = db!(api, |c, db| db::app_page(c, &ns, p.page(ascending)).await?);
    let (rows, done) = p.finish(rows);
    let first = rows.first().map(|a| a.id.clone());
    let last = rows.last().map(|a| a.id.clone());
    let data = rows.iter().map(wire::app_out).collect();
    Ok(answer(StatusCode::OK, list(data, first, last, done)))
}

fn new_app(api: &Api, ns: &str, a: wire::ApplicationIn) -> Result<AppRow, SvixError> {
    a.check()?;
    let now = now(api);
    Ok(AppRow {
        id: ids::new_id("app_", now)?,
        namespace: ns.to_owned(),
        rate_limit: a.rate(),
        uid: a.uid,
        name: a.name,
        metadata: a.metadata.unwrap_or_default(),
        created_at: now,
        updated_at: now,
        tokens_after: None,
        signature_headers: a.signature_headers,
    })
}

async fn create_app(
    State(api): Shared,
    Namespace(ns): Namespace,
    q: Q,
    body: Body,
) -> Result<Response, SvixError> {
    let get_if_exists = q.flag("get_if_exists", false)?;
    let a: wire::ApplicationIn = read_json(body).await?;
    if let Some(uid) = &a.uid
        && let Some(found) = db!(api, |c, db| db::app(c, &ns, uid).await?)
    {
        if get_if_exists {
            return Ok(answer(StatusCode::OK, wire::app_out(&found)));
        }
        return Err(SvixError::new(
            StatusCode::CONFLICT,
            "conflict",
            "An application with that id or uid already exists",
        ));
    }
    let app = new_app(&api, &ns, a)?;
    db!(api, |c, db| db::insert_app(c, &app).await?);
    Ok(answer(StatusCode::CREATED, wire::app_out(&app)))
}

async fn get_app(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    Ok(answer(StatusCode::OK, wire::app_out(&app)))
}

async fn put_app(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let a: wire::ApplicationIn = read_json(body).await?;
    match db!(api, |c, db| db::app(c, &ns, &p.app).await?) {
        Some(mut app) => {
            a.check()?;
            app.rate_limit = a.rate();
            app.uid = a.uid;
            app.name = a.name;
            app.metadata = a.metadata.unwrap_or_default();
            if a.signature_headers.is_some() {
                app.signature_headers = a.signature_headers;
            }
            app.updated_at = now(&api);
            if !tx!(api, |c, db| db::update_app(c, &app).await?) {
                return Err(SvixError::not_found());
            }
            Ok(answer(StatusCode::OK, wire::app_out(&app)))
        }
        None => {
            let app = new_app(&api, &ns, a)?;
            db!(api, |c, db| db::insert_app(c, &app).await?);
            Ok(answer(StatusCode::CREATED, wire::app_out(&app)))
        }
    }
}

async fn patch_app(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let mut app = app_of(&api, &ns, &p.app).await?;
    let patch: wire::ApplicationPatch = read_json(body).await?;
    if let Some(name) = patch.name {
        app.name = name;
    }
    if let Some(uid) = patch.uid {
        app.uid = uid;
    }
    if let Some(rate) = patch.throttle_rate.or(patch.rate_limit) {
        app.rate_limit = rate;
    }
    if let Some(m) = patch.metadata {
        app.metadata = m;
    }
    if patch.signature_headers.is_some() {
        app.signature_headers = patch.signature_headers;
    }
    wire::ApplicationIn {
        name: app.name.clone(),
        uid: app.uid.clone(),
        rate_limit: app.rate_limit,
        throttle_rate: None,
        metadata: Some(app.metadata.clone()),
        signature_headers: app.signature_headers.clone(),
    }
    .check()?;
    app.updated_at = now(&api);
    if !tx!(api, |c, db| db::update_app(c, &app).await?) {
        return Err(SvixError::not_found());
    }
    Ok(answer(StatusCode::OK, wire::app_out(&app)))
}

async fn delete_app(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let deleted = tx!(api, |c, db| db::delete_app(c, &ns, &app.id).await?);
    if !deleted {
        return Err(SvixError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- endpoints ----

async fn list_endpoints(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let lp = q.page()?;
    let ascending = q.ascending(false)?;
    let page = lp.page(ascending);
    let rows = on_pool!(
        &api.emitter.shared.outbox.pool,
        conn,
        crate::send::store::endpoints,
        |c, db| db::endpoint_page(
            c,
            &app.id,
            page.from,
            page.back,
            page.ascending,
            u32::try_from(lp.limit).unwrap_or(250)
        )
        .await?
    );
    let (rows, done) = lp.finish(rows);
    let first = rows.first().map(|e| e.id.clone());
    let last = rows.last().map(|e| e.id.clone());
    let data = rows.iter().map(wire::endpoint_out).collect();
    Ok(answer(StatusCode::OK, list(data, first, last, done)))
}

/// The claims of an app-scoped token, when the request has one.
type TokenScope<'a> = Option<&'a super::portal::Claims>;

fn scope_of(ext: &Option<axum::Extension<super::AppScope>>) -> TokenScope<'_> {
    ext.as_ref().map(|axum::Extension(s)| &*s.0)
}

/// The event types named that are not live event types of the namespace: a 422 naming
/// them, as Svix.
async fn check_types_exist(
    api: &Api,
    ns: &str,
    types: Option<&[String]>,
    scope: TokenScope<'_>,
) -> Result<(), SvixError> {
    let Some(types) = types else { return Ok(()) };
    if types.len() > crate::send::limits::MAX_PATTERNS {
        return Err(SvixError::invalid(
            &["body", "eventTypes"],
            format!("at most {} event types", crate::send::limits::MAX_PATTERNS),
        ));
    }
    let mut missing = Vec::new();
    for name in types {
        let found = db!(api, |c, db| db::event_type(c, ns, name).await?);
        // An event type behind a feature flag the token lacks is missing to it.
        let live = found.is_some_and(|e| !e.archived && scope.is_none_or(|c| flag_visible(&e, c)));
        if !live {
            missing.push(name.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(SvixError::invalid(
        &["body", "eventTypes"],
        format!(
            "The following event types don't exist: {}",
            missing.join(", ")
        ),
    ))
}

async fn create_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    P(p): P<AppPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let e: wire::EndpointIn = read_json(body).await?;
    let created = new_endpoint(&api, &ns, &app, e, scope_of(&scope)).await?;
    Ok(answer(StatusCode::CREATED, wire::endpoint_out(&created)))
}

async fn new_endpoint(
    api: &Api,
    ns: &str,
    app: &AppRow,
    e: wire::EndpointIn,
    scope: TokenScope<'_>,
) -> Result<Endpoint, SvixError> {
    let metadata = e.metadata.clone().unwrap_or_default();
    wire::check_endpoint(
        &e.url,
        e.uid.as_deref(),
        e.rate(),
        e.event_types.as_deref(),
        &metadata,
    )?;
    check_types_exist(api, ns, e.event_types.as_deref(), scope).await?;
    let rate_limit = e.rate();
    let format = match app.signature_headers.as_deref() {
        Some("svix") => crate::send::Format::SvixHeaders,
        Some(_) => crate::send::Format::Svix,
        None => api.format,
    };
    let mut new = NewEndpoint::new(e.url).owner(app.id.clone()).format(format);
    new.events = e.event_types.unwrap_or_default();
    new.uid = e.uid;
    new.description = e.description;
    new.channels = e.channels;
    new.headers = e.headers.unwrap_or_default();
    new.rate_limit = rate_limit;
    new.metadata = wire::metadata_json(metadata);
    new.secret = e.secret;
    new.disabled = e.disabled.unwrap_or(false);
    Ok(api.emitter.create_endpoint(new).await?.endpoint)
}

async fn get_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    Ok(answer(StatusCode::OK, wire::endpoint_out(&ep)))
}

/// Checks the fields a change gives, as a create checks them, then writes only those.
async fn change_endpoint(
    api: &Api,
    ns: &str,
    app: &AppRow,
    ep: &Endpoint,
    ch: EndpointChange,
    scope: TokenScope<'_>,
) -> Result<Endpoint, SvixError> {
    if let Some(url) = &ch.url {
        wire::check_endpoint(url, None, None, None, &Metadata::new())?;
        api.emitter.shared.policy.check_new_url(url)?;
    }
    if let Some(Some(uid)) = &ch.uid {
        wire::check_uid(uid, "ep_")?;
    }
    if let Some(Some(0)) = ch.rate_limit {
        return Err(SvixError::invalid(
            &["body", "rateLimit"],
            "rate limits are at least 1",
        ));
    }
    if let Some(events) = &ch.events {
        let types = (!events.is_empty()).then_some(events.as_slice());
        check_types_exist(api, ns, types, scope).await?;
    }
    if let Some(m) = &ch.metadata
        && crate::wire::json_size(m) > crate::send::limits::MAX_METADATA_BYTES
    {
        return Err(SvixError::invalid(
            &["body", "metadata"],
            "metadata must be less than or equal to 4096 bytes",
        ));
    }
    crate::send::model::validate_endpoint_extras(
        None,
        ch.description.as_deref().unwrap_or(""),
        ch.channels.as_ref().and_then(Option::as_deref),
        ch.headers.as_ref().unwrap_or(&Headers::new()),
    )?;
    let now = now(api);
    let changed = on_pool!(
        &api.emitter.shared.outbox.pool,
        tx,
        crate::send::store::endpoints,
        |c, db| db::change_endpoint(c, &app.id, &ep.id, &ch, now).await?
    );
    if !changed {
        // It exists (just read): the owner tried to enable what an operator disabled.
        return Err(SvixError::new(
            StatusCode::FORBIDDEN,
            "insufficient access",
            "an operator disabled this endpoint: only an operator enables it",
        ));
    }
    endpoint_of(api, app, &ep.id).await
}

async fn put_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    P(p): P<EpPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let e: wire::EndpointIn = read_json(body).await?;
    let ep = match endpoint_of(&api, &app, &p.ep).await {
        Ok(ep) => ep,
        Err(SvixError::Http { status, .. }) if status == StatusCode::NOT_FOUND => {
            // Svix's PUT creates a missing endpoint (with a new secret).
            let mut e = e;
            e.secret = None;
            let created = new_endpoint(&api, &ns, &app, e, scope_of(&scope)).await?;
            return Ok(answer(StatusCode::CREATED, wire::endpoint_out(&created)));
        }
        Err(e) => return Err(e),
    };
    let metadata = e.metadata.clone().unwrap_or_default();
    wire::check_endpoint(
        &e.url,
        e.uid.as_deref(),
        e.rate(),
        e.event_types.as_deref(),
        &metadata,
    )?;
    let ch = EndpointChange {
        rate_limit: Some(e.rate()),
        url: Some(e.url),
        description: Some(e.description),
        uid: Some(e.uid),
        enabled: e.disabled.map(|d| !d),
        events: Some(e.event_types.unwrap_or_default()),
        channels: Some(e.channels),
        metadata: Some(wire::metadata_json(metadata)),
        headers: e.headers,
    };
    let ep = change_endpoint(&api, &ns, &app, &ep, ch, scope_of(&scope)).await?;
    Ok(answer(StatusCode::OK, wire::endpoint_out(&ep)))
}

async fn patch_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    P(p): P<EpPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let patch: wire::EndpointPatch = read_json(body).await?;
    let events = match patch.event_types {
        Some(Some(types)) if types.is_empty() => {
            return Err(SvixError::invalid(
                &["body", "eventTypes"],
                "eventTypes can't be empty, it must have at least one item.",
            ));
        }
        Some(types) => Some(types.unwrap_or_default()),
        None => None,
    };
    let ch = EndpointChange {
        url: patch.url,
        description: patch.description,
        uid: patch.uid,
        rate_limit: patch.throttle_rate.or(patch.rate_limit),
        enabled: patch.disabled.map(|d| !d),
        events,
        channels: patch.channels,
        metadata: patch.metadata.map(wire::metadata_json),
        headers: None,
    };
    let ep = change_endpoint(&api, &ns, &app, &ep, ch, scope_of(&scope)).await?;
    Ok(answer(StatusCode::OK, wire::endpoint_out(&ep)))
}

async fn delete_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    if !api
        .emitter
        .delete_endpoint(Scope::Owner(&app.id), &ep.id)
        .await?
    {
        return Err(SvixError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn get_secret(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let row = on_pool!(
        &api.emitter.shared.outbox.pool,
        conn,
        crate::send::store::endpoints,
        |c, db| db::endpoint(c, Scope::Owner(&app.id), &ep.id).await?
    )
    .ok_or_else(SvixError::not_found)?;
    // For Ed25519, the public key the receiver verifies with; the private key stays here.
    let key = row.endpoint.public_key.unwrap_or(row.secret);
    Ok(secret_answer(json!({ "key": key })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RotateIn {
    key: Option<String>,
    grace_period_seconds: Option<u32>,
}

async fn rotate_secret(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let r: RotateIn = read_optional_json(body).await?;
    let grace = r.grace_period_seconds.unwrap_or(86_400);
    if grace > 604_800 {
        return Err(SvixError::invalid(
            &["body", "gracePeriodSeconds"],
            "Duration must be between 0 and 7 days",
        ));
    }
    let rotated = api
        .emitter
        .rotate_secret_to(
            Scope::Owner(&app.id),
            &ep.id,
            r.key,
            std::time::Duration::from_secs(u64::from(grace)),
        )
        .await?;
    // Svix's open-source server answers 204; its 2.x clients read the new key from the
    // answer (`EndpointSecretOut`), and the older ones read nothing: a 200 with the key
    // serves both.
    Ok(secret_answer(json!({ "key": rotated.secret })))
}

async fn endpoint_stats(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let now = now(&api);
    let until = q.time("until")?.unwrap_or(now);
    if until > now + 60_000 {
        return Err(SvixError::bad_request(
            "invalid_range",
            "'until' cannot be in the future",
        ));
    }
    const DAYS_28: i64 = 28 * 86_400_000;
    let since = q.time("since")?.unwrap_or(until - DAYS_28);
    if since < until - DAYS_28 - 300_000 {
        return Err(SvixError::bad_request(
            "invalid_range",
            format!(
                "'since' cannot be more than 28 days prior to {}",
                wire::time(until)
            ),
        ));
    }
    let [success, pending, sending, fail] = db!(api, |c, db| db::endpoint_stats(
        c, &ep.id, since, until, STATS_CAP
    )
    .await?);
    Ok(answer(
        StatusCode::OK,
        json!({"success": success, "pending": pending, "sending": sending, "fail": fail, "canceled": 0}),
    ))
}

/// Each count of an endpoint's stats stops here (read by index: bounded whatever the
/// history).
const STATS_CAP: i64 = 1_000_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExampleIn {
    event_type: String,
}

async fn send_example(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    P(p): P<EpPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let e: ExampleIn = read_json(body).await?;
    let payload = if e.event_type == "svix.ping" {
        json!({"success": true})
    } else if e.event_type == "webhook.test" {
        // The portal's test event (until event types carry examples of their own).
        json!({"type": "webhook.test", "test": true, "endpoint_id": ep.id})
    } else {
        let t = db!(api, |c, db| db::event_type(c, &ns, &e.event_type).await?)
            .filter(|t| scope_of(&scope).is_none_or(|c| flag_visible(t, c)))
            .ok_or_else(SvixError::not_found)?;
        t.schemas
            .as_ref()
            .and_then(|s| s.get("1"))
            .and_then(|s| s.get("examples"))
            .and_then(|x| x.get(0))
            .cloned()
            .ok_or_else(|| {
                SvixError::bad_request(
                    "invalid_scheme",
                    "Unable to generate example message from event-type schema",
                )
            })?
    };
    let mut m = NewMessage::new(&e.event_type, &payload)?.owner(app.id.clone());
    m.only_endpoint = Some(ep.id.clone());
    let sent = api.emitter.send_message(m).await?;
    let row = MessageRow {
        id: sent.message_id,
        event_id: None,
        event_type: e.event_type,
        payload: None,
        channels: None,
        created_at: now(&api),
        expunged: false,
    };
    Ok(answer(StatusCode::OK, wire::message_out(&row, false)))
}

#[derive(Deserialize)]
struct RecoverIn {
    since: String,
    until: Option<String>,
}

async fn recover(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    body: Body,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    let r: RecoverIn = read_json(body).await?;
    let since = wire::body_time("since", &r.since)?;
    let now = now(&api);
    let until = r
        .until
        .as_deref()
        .map(|u| wire::body_time("until", u))
        .transpose()?
        .unwrap_or(now);
    if since < until - 14 * 86_400_000 - 300_000 {
        return Err(SvixError::invalid(
            &["body", "since"],
            "Cannot recover more than 14 days of messages",
        ));
    }
    let filter = DeliveryFilter::default()
        .endpoint(ep.id.clone())
        .status(DeliveryStatus::Dead)
        .since(since)
        .until(until);
    let sent = api.emitter.replay(Scope::Owner(&app.id), &filter).await?;
    // Done before answering (Svix answers `running` and works in the background).
    Ok(answer(
        StatusCode::ACCEPTED,
        json!({
            "id": ids::new_id("qtask_", now)?,
            "status": "finished",
            "task": "endpoint.recover",
            "data": {"messagesSent": sent},
            "updatedAt": wire::time(now),
        }),
    ))
}

/// Header names whose values are never answered (as Svix).
const SENSITIVE: &[&str] = &[
    "x-auth-token",
    "x-api-key",
    "www-authenticate",
    "authorization",
    "proxy-authenticate",
    "proxy-authorization",
];

async fn headers_of(api: &Api, app: &AppRow, ep: &str) -> Result<(String, Headers), SvixError> {
    let ep = endpoint_of(api, app, ep).await?;
    let headers = on_pool!(
        &api.emitter.shared.outbox.pool,
        conn,
        crate::send::store::endpoints,
        |c, db| db::headers(c, &app.id, &ep.id).await?
    )
    .ok_or_else(SvixError::not_found)?;
    Ok((ep.id, headers))
}

async fn get_headers(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let (_, headers) = headers_of(&api, &app, &p.ep).await?;
    let (sensitive, shown): (Vec<_>, Vec<_>) = headers
        .into_iter()
        .partition(|(k, _)| SENSITIVE.contains(&k.to_ascii_lowercase().as_str()));
    let shown: serde_json::Map<String, Value> = shown
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let sensitive: Vec<String> = sensitive.into_iter().map(|(k, _)| k).collect();
    Ok(answer(
        StatusCode::OK,
        json!({"headers": shown, "sensitive": sensitive}),
    ))
}

#[derive(Deserialize)]
struct HeadersIn {
    headers: Headers,
}

#[derive(Deserialize)]
struct HeadersPatchIn {
    headers: std::collections::BTreeMap<String, Option<String>>,
}

async fn write_headers(
    api: &Api,
    ns: &str,
    app: &AppRow,
    ep_id: &str,
    headers: Headers,
) -> Result<(), SvixError> {
    crate::send::filter::validate_headers(&headers)?;
    let ep = endpoint_of(api, app, ep_id).await?;
    let ch = EndpointChange {
        headers: Some(headers),
        ..EndpointChange::default()
    };
    // Headers only: no event type is named.
    change_endpoint(api, ns, app, &ep, ch, None).await?;
    Ok(())
}

async fn put_headers(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    body: Body,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let (id, _) = headers_of(&api, &app, &p.ep).await?;
    let h: HeadersIn = read_json(body).await?;
    write_headers(&api, &ns, &app, &id, h.headers).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_headers(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    body: Body,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let (id, mut headers) = headers_of(&api, &app, &p.ep).await?;
    let h: HeadersPatchIn = read_json(body).await?;
    for (name, value) in h.headers {
        // A name differing only in case is the same header.
        headers.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        if let Some(v) = value {
            headers.insert(name, v);
        }
    }
    write_headers(&api, &ns, &app, &id, headers).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn endpoint_messages(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    q.refuse(&["event_types", "channel", "before", "after"])?;
    let lp = q.page()?;
    let with_content = q.flag("with_content", true)?;
    let status = q.int("status")?;
    let from = lp
        .from
        .as_deref()
        .map(|f| {
            f.strip_prefix("msgep_")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| bad_query("iterator"))
        })
        .transpose()?;
    let rows = if status.is_some() { SCAN } else { lp.limit + 1 };
    let scanned = db!(api, |c, db| db::endpoint_deliveries(
        c, &ep.id, from, lp.back, rows
    )
    .await?);
    let keep =
        |d: &store::DeliveryRow| status.is_none_or(|s| i64::from(wire::delivery_status(d).0) == s);
    let msgep = |d: &store::DeliveryRow| format!("msgep_{}", d.id);
    let mut cut = cut(&lp, scanned, rows, keep, msgep);
    // Each page's messages by key, nearest the cursor first, within the content budget.
    let n = cut.rows.len();
    let mut messages: Vec<Option<MessageRow>> = (0..n).map(|_| None).collect();
    let mut bytes = 0usize;
    let mut filled = n;
    for k in 0..n {
        let i = if lp.back { n - 1 - k } else { k };
        if k > 0 && bytes >= PAGE_CONTENT_BYTES {
            filled = k;
            break;
        }
        let id = cut.rows[i].message_id.clone();
        let m = db!(api, |c, db| db::message(c, &app.id, &id, with_content)
            .await?);
        bytes += m
            .as_ref()
            .and_then(|m| m.payload.as_ref())
            .map_or(0, String::len);
        messages[i] = m;
    }
    if filled < n {
        if lp.back {
            messages.drain(..n - filled);
        } else {
            messages.truncate(filled);
        }
        cut.keep_nearest(filled, lp.back, msgep);
    }
    let data: Vec<_> = cut
        .rows
        .iter()
        .zip(messages)
        .filter_map(|(d, m)| {
            let (code, text) = wire::delivery_status(d);
            let mut out = wire::message_out(&m?, with_content);
            out.status = Some(code);
            out.status_text = Some(text);
            out.next_attempt = Some(wire::next_attempt(d));
            Some(out)
        })
        .collect();
    Ok(answer(
        StatusCode::OK,
        list(data, cut.first, cut.last, cut.done),
    ))
}

// ---- event types ----

async fn list_event_types(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    q: Q,
) -> Result<Response, SvixError> {
    let lp = q.page()?;
    let with_content = q.flag("with_content", false)?;
    let include_archived = q.flag("include_archived", false)?;
    let rows = db!(api, |c, db| db::event_type_page(
        c,
        &ns,
        include_archived,
        lp.page(true)
    )
    .await?);
    let (mut rows, done) = lp.finish(rows);
    // The page's ends are the rows read, before the token's hidden ones are taken out: a
    // page of hidden event types still leads on.
    let first = rows.first().map(|e| e.name.clone());
    let last = rows.last().map(|e| e.name.clone());
    if let Some(claims) = scope_of(&scope) {
        rows.retain(|e| flag_visible(e, claims));
    }
    let data: Vec<_> = rows
        .iter()
        .map(|e| wire::event_type_out(e, with_content))
        .collect();
    Ok(answer(StatusCode::OK, list(data, first, last, done)))
}

/// Whether an app-scoped token sees an event type: one without a feature flag, or with one
/// of the token's.
fn flag_visible(e: &EventTypeRow, claims: &super::portal::Claims) -> bool {
    e.feature_flag
        .as_ref()
        .is_none_or(|f| claims.ff.contains(f))
}

fn event_type_row(
    api: &Api,
    name: String,
    e: wire::EventTypeIn,
    created_at: Option<i64>,
) -> Result<EventTypeRow, SvixError> {
    let now = now(api);
    let row = EventTypeRow {
        name,
        description: e.description,
        schemas: e.schemas.map(Value::Object),
        deprecated: e.deprecated,
        archived: e.archived,
        feature_flag: e.feature_flag,
        created_at: created_at.unwrap_or(now),
        updated_at: now,
    };
    wire::check_event_type(&row)?;
    Ok(row)
}

async fn create_event_type(
    State(api): Shared,
    Namespace(ns): Namespace,
    body: Body,
) -> Result<Response, SvixError> {
    let mut e: wire::EventTypeIn = read_json(body).await?;
    let name = e
        .name
        .take()
        .ok_or_else(|| SvixError::invalid(&["body", "name"], "field required"))?;
    let existing = db!(api, |c, db| db::event_type(c, &ns, &name).await?);
    if existing.as_ref().is_some_and(|x| !x.archived) {
        return Err(SvixError::new(
            StatusCode::CONFLICT,
            "event_type_exists",
            "An event_type with this name already exists",
        ));
    }
    // An archived one is brought back, overwritten.
    let row = event_type_row(&api, name, e, existing.map(|x| x.created_at))?;
    db!(api, |c, db| db::put_event_type(c, &ns, &row).await?);
    Ok(answer(
        StatusCode::CREATED,
        wire::event_type_out(&row, true),
    ))
}

async fn get_event_type(
    State(api): Shared,
    Namespace(ns): Namespace,
    scope: Option<axum::Extension<super::AppScope>>,
    P(p): P<NamePath>,
) -> Result<Response, SvixError> {
    let e = db!(api, |c, db| db::event_type(c, &ns, &p.name).await?)
        .ok_or_else(SvixError::not_found)?;
    if let Some(axum::Extension(scope)) = &scope
        && !flag_visible(&e, &scope.0)
    {
        return Err(SvixError::not_found());
    }
    Ok(answer(StatusCode::OK, wire::event_type_out(&e, true)))
}

async fn put_event_type(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<NamePath>,
    body: Body,
) -> Result<Response, SvixError> {
    let e: wire::EventTypeIn = read_json(body).await?;
    let existing = db!(api, |c, db| db::event_type(c, &ns, &p.name).await?);
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let row = event_type_row(&api, p.name, e, existing.map(|x| x.created_at))?;
    db!(api, |c, db| db::put_event_type(c, &ns, &row).await?);
    Ok(answer(status, wire::event_type_out(&row, true)))
}

async fn patch_event_type(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<NamePath>,
    body: Body,
) -> Result<Response, SvixError> {
    let mut row = db!(api, |c, db| db::event_type(c, &ns, &p.name).await?)
        .ok_or_else(SvixError::not_found)?;
    let patch: wire::EventTypePatch = read_json(body).await?;
    if let Some(d) = patch.description {
        row.description = d;
    }
    if let Some(a) = patch.archived {
        row.archived = a;
    }
    if let Some(d) = patch.deprecated {
        row.deprecated = d;
    }
    if let Some(s) = patch.schemas {
        row.schemas = s.map(Value::Object);
    }
    if let Some(f) = patch.feature_flag {
        row.feature_flag = f;
    }
    row.updated_at = now(&api);
    wire::check_event_type(&row)?;
    db!(api, |c, db| db::put_event_type(c, &ns, &row).await?);
    Ok(answer(StatusCode::OK, wire::event_type_out(&row, true)))
}

async fn delete_event_type(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<NamePath>,
    q: Q,
) -> Result<StatusCode, SvixError> {
    let expunge = q.flag("expunge", false)?;
    let mut row = db!(api, |c, db| db::event_type(c, &ns, &p.name).await?)
        .ok_or_else(SvixError::not_found)?;
    if expunge {
        db!(api, |c, db| db::delete_event_type(c, &ns, &p.name).await?);
    } else {
        row.archived = true;
        row.updated_at = now(&api);
        db!(api, |c, db| db::put_event_type(c, &ns, &row).await?);
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- messages ----

async fn create_message(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    q: Q,
    body: Body,
) -> Result<Response, SvixError> {
    let with_content = q.flag("with_content", true)?;
    let m: wire::MessageIn = read_json(body).await?;
    let raw = m.payload.get();
    if !raw.trim_start().starts_with('{') {
        return Err(SvixError::invalid(
            &["body", "payload"],
            "Payload must be an object.",
        ));
    }
    if let Some(uid) = &m.event_id {
        wire::check_uid(uid, "msg_")?;
    }
    let app = match db!(api, |c, db| db::app(c, &ns, &p.app).await?) {
        Some(app) => app,
        // Svix creates the application named in the body, when its uid is the path's.
        None => create_named_app(&api, &ns, &p.app, m.application).await?,
    };
    let mut message = NewMessage::json(m.event_type.clone(), raw).owner(app.id.clone());
    if let Some(uid) = &m.event_id {
        message = message.idempotency_key(uid.clone());
    }
    message.channels = m.channels.clone();
    let sent = api.emitter.send_message(message).await?;
    if sent.duplicate {
        // Svix: an event id is unique in its application, for as long as the message is kept.
        return Err(SvixError::conflict());
    }
    let row = MessageRow {
        id: sent.message_id,
        event_id: m.event_id,
        event_type: m.event_type,
        payload: Some(raw.to_owned()),
        channels: m.channels,
        created_at: ids_time(&api),
        expunged: false,
    };
    Ok(answer(
        StatusCode::ACCEPTED,
        wire::message_out(&row, with_content),
    ))
}

fn ids_time(api: &Api) -> i64 {
    now(api)
}

async fn list_messages(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let lp = q.page()?;
    let with_content = q.flag("with_content", true)?;
    let types = q.event_types()?;
    let channel = q.0.get("channel").cloned();
    let after = q.time("after")?.map(|t| ids::id_bound("msg_", t, true));
    let before = q.time("before")?.map(|t| ids::id_bound("msg_", t, false));
    let mut page = lp.page(false);
    if types.is_some() || channel.is_some() {
        page.rows = SCAN;
    }
    let scanned = db!(api, |c, db| db::message_page(
        c,
        &app.id,
        after.as_deref(),
        before.as_deref(),
        false,
        page
    )
    .await?);
    let keep = |m: &MessageRow| {
        types.as_ref().is_none_or(|t| t.contains(&m.event_type))
            && channel
                .as_ref()
                .is_none_or(|c| m.channels.as_ref().is_some_and(|mc| mc.contains(c)))
    };
    let mut cut = cut(&lp, scanned, page.rows, keep, |m| m.id.clone());
    if with_content {
        let filled = fill_payloads(&api, &app.id, &mut cut.rows, lp.back).await?;
        cut.keep_nearest(filled, lp.back, |m| m.id.clone());
    }
    let data: Vec<_> = cut
        .rows
        .iter()
        .map(|m| wire::message_out(m, with_content))
        .collect();
    Ok(answer(
        StatusCode::OK,
        list(data, cut.first, cut.last, cut.done),
    ))
}

async fn get_message(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let with_content = q.flag("with_content", true)?;
    let m = message_of(&api, &app, &p.msg, with_content).await?;
    Ok(answer(StatusCode::OK, wire::message_out(&m, with_content)))
}

async fn expunge_message(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgPath>,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    if !api.emitter.expunge(Scope::Owner(&app.id), &m.id).await? {
        return Err(SvixError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Message not found",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn message_destinations(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let lp = q.page()?;
    if lp.back {
        return Err(bad_query("iterator"));
    }
    let rows = db!(api, |c, db| db::message_deliveries(
        c,
        &m.id,
        lp.from.as_deref(),
        lp.limit + 1
    )
    .await?);
    let (rows, done) = lp.finish(rows);
    let mut data = Vec::with_capacity(rows.len());
    for d in &rows {
        // A deleted endpoint is not listed (Svix keeps deleted endpoints; this outbox does not).
        let Ok(ep) = endpoint_of(&api, &app, &d.endpoint_id).await else {
            continue;
        };
        let mut out = wire::endpoint_out(&ep);
        let (code, text) = wire::delivery_status(d);
        out["status"] = json!(code);
        out["statusText"] = json!(text);
        out["nextAttempt"] = json!(wire::next_attempt(d));
        data.push(out);
    }
    let first = rows.first().map(|d| d.endpoint_id.clone());
    let last = rows.last().map(|d| d.endpoint_id.clone());
    Ok(answer(StatusCode::OK, list(data, first, last, done)))
}

async fn resend(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgEpPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    if m.expunged {
        return Err(SvixError::bad_request(
            "missing_payload",
            "Unable to resend message. Payload is missing (probably expired).",
        ));
    }
    let now = now(&api);
    tx!(api, |c, db| db::resend(c, &app.id, &m.id, &ep.id, now)
        .await?);
    api.emitter.shared.wake.notify_one();
    Ok(answer(StatusCode::ACCEPTED, json!({})))
}

/// Lists attempts of an endpoint and/or a message, newest first, filtered by `status` and
/// `status_code_class` within a bounded scan.
async fn attempts(
    api: &Api,
    endpoint_id: Option<&str>,
    message_id: Option<&str>,
    q: &Q,
) -> Result<Response, SvixError> {
    q.refuse(&["event_types", "channel"])?;
    let lp = q.page()?;
    let with_content = q.flag("with_content", true)?;
    let status = q.int("status")?;
    let class = q.int("status_code_class")?;
    let after = q.time("after")?;
    let before = q.time("before")?;
    let from = lp
        .from
        .as_deref()
        .map(|f| wire::parse_attempt_id(f).ok_or_else(|| bad_query("iterator")))
        .transpose()?;
    let filtered = status.is_some() || class.is_some() || after.is_some() || before.is_some();
    let rows = if filtered { SCAN } else { lp.limit + 1 };
    let scanned = db!(api, |c, db| db::attempt_page(
        c,
        endpoint_id,
        message_id,
        from,
        lp.back,
        rows
    )
    .await?);
    let keep = |a: &store::AttemptRow| {
        let code = a.status_code.unwrap_or(0);
        let ok = (200..300).contains(&code);
        status.is_none_or(|s| s == if ok { 0 } else { 2 })
            && class.is_none_or(|c| {
                if c == 0 {
                    code < 100
                } else {
                    code / 100 * 100 == c
                }
            })
            && after.is_none_or(|t| a.at > t)
            && before.is_none_or(|t| a.at < t)
    };
    let cut = cut(&lp, scanned, rows, keep, |a| wire::attempt_id(a.id));
    let data: Vec<_> = cut
        .rows
        .iter()
        .map(|a| wire::attempt_out(a, with_content))
        .collect();
    Ok(answer(
        StatusCode::OK,
        list(data, cut.first, cut.last, cut.done),
    ))
}

async fn attempts_of_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<EpPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    attempts(&api, Some(&ep.id), None, &q).await
}

async fn attempts_of_message(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let ep = match q.0.get("endpoint_id") {
        Some(e) => Some(endpoint_of(&api, &app, e).await?.id),
        None => None,
    };
    attempts(&api, ep.as_deref(), Some(&m.id), &q).await
}

async fn attempts_of_message_endpoint(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<MsgEpPath>,
    q: Q,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let ep = endpoint_of(&api, &app, &p.ep).await?;
    attempts(&api, Some(&ep.id), Some(&m.id), &q).await
}

async fn get_attempt(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AttemptPath>,
) -> Result<Response, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let id = wire::parse_attempt_id(&p.attempt).ok_or_else(SvixError::not_found)?;
    let a = db!(api, |c, db| db::attempt(c, &m.id, id).await?).ok_or_else(SvixError::not_found)?;
    Ok(answer(StatusCode::OK, wire::attempt_out(&a, true)))
}

async fn expunge_attempt(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AttemptPath>,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let m = message_of(&api, &app, &p.msg, false).await?;
    let missing = || {
        SvixError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Message attempt not found",
        )
    };
    let id = wire::parse_attempt_id(&p.attempt).ok_or_else(missing)?;
    if !db!(api, |c, db| db::expunge_attempt(c, &m.id, id).await?) {
        return Err(missing());
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- the portal ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PortalAccessIn {
    application: Option<wire::ApplicationIn>,
    #[serde(default)]
    feature_flags: Vec<String>,
    #[serde(default)]
    read_only: bool,
    /// Seconds (Svix's 2.x clients send it).
    expiry: Option<u64>,
}

/// An app-scoped token for one application's portal, and the page it opens:
/// `{"url": "<portal>#token=..", "token"}`. The application is created from `application`
/// when missing (its uid must be the path's), as Svix does.
async fn portal_access(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, SvixError> {
    let Some(key) = api.portal_key.as_ref().and_then(|k| k(&ns)) else {
        return Err(SvixError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "This API endpoint is not yet implemented.",
        ));
    };
    let r: PortalAccessIn = read_optional_json(body).await?;
    if r.feature_flags.len() > 16
        || r.feature_flags
            .iter()
            .any(|f| !crate::send::filter::is_name(f, 64))
    {
        return Err(SvixError::invalid(
            &["body", "featureFlags"],
            "at most 16 feature flags, each 1 to 64 bytes of [a-zA-Z0-9-_.]",
        ));
    }
    let app = match db!(api, |c, db| db::app(c, &ns, &p.app).await?) {
        Some(app) => app,
        None => create_named_app(&api, &ns, &p.app, r.application).await?,
    };
    let lifetime = r.expiry.unwrap_or(super::portal::DEFAULT_LIFETIME_SECS);
    if !(super::portal::MIN_LIFETIME_SECS..=super::portal::MAX_LIFETIME_SECS).contains(&lifetime) {
        return Err(SvixError::invalid(
            &["body", "expiry"],
            "expiry is 60 to 604800 seconds",
        ));
    }
    let now = now(&api);
    // After an `expire-all` in this same millisecond, still a token that is valid.
    let iat = app
        .tokens_after
        .map_or(now, |t| now.max(t.saturating_add(1)));
    let claims = super::portal::Claims {
        ns,
        app: app.id,
        iat,
        exp: now.saturating_add(i64::try_from(lifetime * 1000).unwrap_or(i64::MAX)),
        ro: r.read_only,
        ff: r.feature_flags,
    };
    let token = super::portal::mint(&key, &claims);
    if token.len() > super::portal::MAX_TOKEN_LEN {
        return Err(SvixError::invalid(
            &["body", "featureFlags"],
            "the token would be too long: fewer feature flags",
        ));
    }
    let base = match &api.portal_url {
        Some(u) => u.clone(),
        None => {
            // Only a plain `host[:port]` (a Host with `/`, `@`, `?` or `#` would make another
            // URL); behind a TLS proxy, configure the portal's URL instead.
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    !h.is_empty()
                        && h.len() <= 255
                        && h.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                        })
                })
                .unwrap_or("localhost");
            format!("http://{host}/portal/")
        }
    };
    Ok(secret_answer(
        json!({ "url": format!("{base}#token={token}"), "token": token }),
    ))
}

/// Every token issued for the application until now stops working (Svix Cloud's
/// `expire-all`; a body, such as its `sessionIds`, is ignored: all of them expire).
async fn expire_all(
    State(api): Shared,
    Namespace(ns): Namespace,
    P(p): P<AppPath>,
) -> Result<StatusCode, SvixError> {
    let app = app_of(&api, &ns, &p.app).await?;
    let now = now(&api);
    if !db!(api, |c, db| db::expire_tokens(c, &ns, &app.id, now).await?) {
        return Err(SvixError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The application `uid` a body names, created because it is missing: its uid must be the
/// path's (Svix's rule for message create and portal access).
async fn create_named_app(
    api: &Api,
    ns: &str,
    path_uid: &str,
    application: Option<wire::ApplicationIn>,
) -> Result<AppRow, SvixError> {
    let Some(a) = application else {
        return Err(SvixError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Application not found",
        ));
    };
    match a.uid.as_deref() {
        None => {
            return Err(SvixError::Validation {
                loc: vec!["body".into(), "application".into(), "uid".into()],
                msg: "Application UID not set in body".into(),
                kind: "application_uid_missing",
            });
        }
        Some(uid) if uid != path_uid => {
            return Err(SvixError::Validation {
                loc: vec!["body".into(), "application".into(), "uid".into()],
                msg: "Application UID in the path and body must match".into(),
                kind: "application_uid_mismatch",
            });
        }
        Some(_) => {}
    }
    let app = new_app(api, ns, a)?;
    match db!(api, |c, db| db::insert_app(c, &app).await) {
        Ok(()) => Ok(app),
        // Created meanwhile by another request: that one.
        Err(SendError::Conflict) => app_of(api, ns, path_uid).await,
        Err(e) => Err(e.into()),
    }
}
