//! The worker-facing operations on the Redis storage: the same checks, in the same
//! order, as the in-memory orchestrator's (`crate::handler`), with each change of
//! state one script.

use super::{Known, R, Redis, json, millis, now_ms, parse, scripts, unavailable, verdict_of};
use crate::auth::{self, Credential, IssuedToken, Refresh};
use crate::handler::{
    self as h, ChannelReceiver, bad_request, check_event_payload, check_event_task, checked_event,
    checked_heartbeat, event_job, no_task_of_job, not_registered, refuse_downgrade,
};
use crate::store::{self, MAX_SCAN};
use crate::{Inner, Orchestrator};
use ::redis::AsyncCommands;
use ::redis::aio::ConnectionManager;
use rxon_core::validate::validate_identifier;
use rxon_core::{
    CommandReceiver, HandlerError, HandlerResult, Heartbeat, HeartbeatReply, ProgressUpdatePayload,
    RegisterReply, RequestContext, ResultOutcome, TaskPayload, TaskResult, TokenResponse,
    WorkerCommand, WorkerEventPayload, WorkerRegistration,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Why a claim found nothing to return.
enum ClaimError {
    /// The worker is not registered (or has gone).
    Gone,
    /// The storage failed.
    Storage(::redis::RedisError),
}

impl From<::redis::RedisError> for ClaimError {
    fn from(e: ::redis::RedisError) -> Self {
        ClaimError::Storage(e)
    }
}

/// What a poll knows of its worker: catalog version, heartbeat epoch, last heartbeat.
struct View {
    cv: String,
    epoch: String,
    heartbeat: Option<Heartbeat>,
}

impl View {
    fn new(cv: String, epoch: String, heartbeat: &str) -> R<View> {
        let heartbeat = (!heartbeat.is_empty())
            .then(|| parse("heartbeat", heartbeat))
            .transpose()?;
        Ok(View {
            cv,
            epoch,
            heartbeat,
        })
    }
}

/// Whether a token may be one the STS operation issued (`sts-…`): only those are
/// looked up in the storage.
fn looks_issued(token: &str) -> bool {
    token.starts_with("sts-")
}

impl Redis {
    async fn con_h(&self) -> HandlerResult<ConnectionManager> {
        self.con().await.map_err(unavailable)
    }

    /// An issued (`tok`) or refresh (`rt`) token by name, if live.
    async fn lookup_token(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        kind: &str,
        token: &str,
    ) -> R<Option<IssuedToken>> {
        let key = self.key(&[kind, &super::digest(token)]);
        let ((w, r), ttl): ((Option<String>, Option<String>), i64) = ::redis::pipe()
            .hmget(&key, &["w", "r"])
            .pttl(&key)
            .query_async(con)
            .await?;
        if ttl == -2 || (w.is_none() && r.is_none()) {
            return Ok(None);
        }
        let root = r.filter(|r| !r.is_empty()).and_then(|d| {
            auth::static_credentials(&inner.config)
                .find(|c| super::digest(c) == d)
                .cloned()
        });
        let expires_at = u64::try_from(ttl)
            .ok()
            .and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        Ok(Some(IssuedToken {
            worker_id: w.filter(|w| !w.is_empty()),
            expires_at,
            root,
        }))
    }

    /// Authenticates the request and counts it against the rate limit of the key
    /// `key` picks (falling back to the context's worker id, then the token).
    async fn admit(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        ctx: &RequestContext,
        for_sts: bool,
        key: impl FnOnce(&Credential) -> Option<String>,
    ) -> HandlerResult<Credential> {
        let token = ctx.token.as_deref();
        let issued = match token {
            Some(t) if looks_issued(t) => self
                .lookup_token(inner, con, "tok", t)
                .await
                .map_err(unavailable)?,
            _ => None,
        };
        let cred = auth::authenticate_with(
            &inner.config,
            issued.as_ref(),
            token,
            for_sts,
            Instant::now(),
        )?;
        if inner.config.rate_limit.is_some() {
            let key = key(&cred)
                .or_else(|| ctx.worker_id.clone())
                // '~' is not an identifier character: no clash with worker ids.
                .unwrap_or_else(|| format!("~{}", super::digest(token.unwrap_or_default())));
            self.rate_limit(inner, con, &key).await?;
        }
        Ok(cred)
    }

    /// Counts one request of `key` against the configured limit, in a window shared
    /// by every process.
    async fn rate_limit(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        key: &str,
    ) -> HandlerResult<()> {
        let Some((max, per)) = inner.config.rate_limit else {
            return Ok(());
        };
        let left: i64 = scripts()
            .misc
            .arg(&self.prefix)
            .arg("limit")
            .arg(key)
            .arg(max)
            .arg(millis(per).max(1))
            .invoke_async(con)
            .await
            .map_err(unavailable)?;
        match u64::try_from(left) {
            Ok(ms) => Err(HandlerError::rate_limited(
                format!("too many requests: at most {max} per {per:?}"),
                Some(Duration::from_millis(ms).min(per)),
            )),
            Err(_) => Ok(()),
        }
    }

    /// Admits the request of worker `worker_id` (its rate-limit key) acting as itself.
    async fn admit_as(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        ctx: &RequestContext,
        worker_id: &str,
    ) -> HandlerResult<Credential> {
        let cred = self
            .admit(inner, con, ctx, false, |_| Some(worker_id.to_owned()))
            .await?;
        self.act_as(inner, con, &cred, ctx, worker_id).await?;
        Ok(cred)
    }

    /// Refuses acting as `claimed` when the credential or certificate proves another
    /// worker, or the request is of an older generation than `claimed` registered with.
    async fn act_as(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        cred: &Credential,
        ctx: &RequestContext,
        claimed: &str,
    ) -> HandlerResult<()> {
        auth::check_identity(&inner.config, cred, ctx.cert_identity.as_deref(), claimed)?;
        let (st, proto): (Option<String>, Option<String>) = con
            .hmget(self.key(&["w", claimed]), &["st", "proto"])
            .await
            .map_err(unavailable)?;
        let registered = (st.as_deref() == Some("a"))
            .then(|| rxon_core::Protocol::from_header(proto.as_deref()));
        refuse_downgrade(ctx, claimed, registered)
    }

    /// The static credential behind `token`, if any.
    async fn root_of(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        token: &str,
    ) -> HandlerResult<Option<String>> {
        if let Some(root) = auth::static_root(&inner.config, token) {
            return Ok(Some(root));
        }
        if !looks_issued(token) {
            return Ok(None);
        }
        let issued = self
            .lookup_token(inner, con, "tok", token)
            .await
            .map_err(unavailable)?;
        Ok(issued
            .filter(|t| t.valid_at(Instant::now()))
            .and_then(|t| t.root))
    }

    /// Mints an access token (and a refresh token, as `refresh` says) for
    /// `worker_id`, each kept in the storage until it expires.
    async fn mint(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        worker_id: Option<String>,
        root: Option<String>,
        refresh: Refresh,
    ) -> HandlerResult<TokenResponse> {
        let cfg = &inner.config;
        let access = super::fresh_name("sts");
        let w = worker_id.clone().unwrap_or_default();
        let r = root.as_deref().map(super::digest).unwrap_or_default();
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        let key = self.key(&["tok", &super::digest(&access)]);
        pipe.hset_multiple(&key, &[("w", &w), ("r", &r)])
            .ignore()
            .pexpire(&key, millis(cfg.token_ttl).max(1))
            .ignore();
        let refresh_token = match refresh {
            Refresh::None => None,
            Refresh::Keep(t) => Some(t),
            Refresh::New => {
                let t = super::fresh_name("rt");
                let key = self.key(&["rt", &super::digest(&t)]);
                pipe.hset_multiple(&key, &[("w", &w), ("r", &r)])
                    .ignore()
                    .pexpire(&key, millis(cfg.refresh_token_ttl).max(1))
                    .ignore();
                Some(t)
            }
        };
        let () = pipe.query_async(con).await.map_err(unavailable)?;
        Ok(auth::token_response(cfg, access, refresh_token, worker_id))
    }

    /// The active worker's catalog version and heartbeat epoch, touching it as a poll
    /// that waits until `until` (`None`: a poll that ends now).
    async fn poll_mark(
        &self,
        con: &mut ConnectionManager,
        worker_id: &str,
        poll_id: &str,
        until: Option<i64>,
    ) -> R<Option<View>> {
        let out: Vec<String> = scripts()
            .poll
            .arg(&self.prefix)
            .arg(worker_id)
            .arg(now_ms())
            .arg(until.map(|u| u.to_string()).unwrap_or_default())
            .arg(poll_id)
            .invoke_async(con)
            .await?;
        match out.as_slice() {
            [cv, epoch, hb] => Ok(Some(View::new(cv.clone(), epoch.clone(), hb)?)),
            _ => Ok(None),
        }
    }

    /// The worker's state as a claim needs it.
    async fn view(&self, con: &mut ConnectionManager, worker_id: &str) -> Result<View, ClaimError> {
        let [st, cv, epoch, hb]: [Option<String>; 4] = con
            .hmget(self.key(&["w", worker_id]), &["st", "cv", "epoch", "hb"])
            .await?;
        if st.as_deref() != Some("a") {
            return Err(ClaimError::Gone);
        }
        Ok(View::new(
            cv.unwrap_or_default(),
            epoch.unwrap_or_else(|| "0".to_owned()),
            hb.as_deref().unwrap_or_default(),
        )?)
    }

    /// Claims the oldest queued task `worker_id` can run, as the in-memory store does.
    /// Usually one script: when the oldest task over the worker's skills is one nothing
    /// can refuse (no schema, no requirements), `take.lua` takes it; otherwise the
    /// choice is made here and `claim.lua` takes it if nothing changed meanwhile.
    /// `view` is what the poll last knew of its worker (refreshed when stale).
    async fn claim(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        worker_id: &str,
        lease: Option<i64>,
        poll_epoch: u64,
        view: &mut Option<View>,
    ) -> std::result::Result<Option<TaskPayload>, ClaimError> {
        let lease = lease.map(|l| l.to_string()).unwrap_or_default();
        // Each lost race is progress (another worker took a task, or a stale entry was
        // dropped): keep trying, yielding after the first attempts, for a bounded time.
        let started = Instant::now();
        for attempt in 0.. {
            if attempt >= super::MAX_CLAIM_ATTEMPTS {
                if started.elapsed() > super::MAX_CLAIM_TIME {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let v = match view.take() {
                Some(v) => v,
                None => self.view(con, worker_id).await?,
            };
            if !store::takes_work(
                v.heartbeat.as_ref(),
                v.epoch.parse().unwrap_or(0),
                poll_epoch,
            ) {
                *view = Some(v);
                return Ok(None);
            }
            let known = self.known(inner, con, worker_id, &v.cv).await?;
            let mut fast = scripts().take.prepare_invoke();
            fast.arg(&self.prefix)
                .arg(worker_id)
                .arg(&lease)
                .arg(&v.cv)
                .arg(&v.epoch);
            let mut any = false;
            for skill in &known.catalog.skills {
                if store::can_start(v.heartbeat.as_ref(), &skill.name) {
                    let plain = !known.catalog.contracts.contains_key(&skill.name);
                    fast.arg(&skill.name).arg(if plain { "1" } else { "0" });
                    any = true;
                }
            }
            if !any {
                *view = Some(v);
                return Ok(None);
            }
            let answer: Vec<String> = fast.invoke_async(con).await?;
            match answer.first().map(String::as_str) {
                Some("ok") => {
                    return Ok(Some(parse("task", answer.get(1).map_or("{}", |p| p))?));
                }
                Some("none") => {
                    *view = Some(v);
                    return Ok(None);
                }
                Some("gone") => return Err(ClaimError::Gone),
                Some("slow") => {}
                _ => continue, // the worker changed: look at it again
            }
            let Some((task_id, task_type)) = self.choose(con, &known, v.heartbeat.as_ref()).await?
            else {
                *view = Some(v);
                return Ok(None);
            };
            let answer: Vec<String> = scripts()
                .claim
                .arg(&self.prefix)
                .arg(&task_id)
                .arg(worker_id)
                .arg(&lease)
                .arg(&v.cv)
                .arg(&v.epoch)
                .arg(&task_type)
                .invoke_async(con)
                .await?;
            match answer.first().map(String::as_str) {
                Some("ok") => {
                    return Ok(Some(parse("task", answer.get(1).map_or("{}", |p| p))?));
                }
                Some("gone") => return Err(ClaimError::Gone),
                Some("taken") => *view = Some(v), // another worker was faster: again
                _ => {}                           // the worker changed: look again
            }
        }
        Ok(None)
    }

    /// The oldest queued task, over the worker's skills it can start now, that it
    /// accepts (past at most [`MAX_SCAN`] it refuses per skill), with its type.
    async fn choose(
        &self,
        con: &mut ConnectionManager,
        known: &Known,
        heartbeat: Option<&Heartbeat>,
    ) -> R<Option<(String, String)>> {
        let skills: Vec<&str> = known
            .catalog
            .skills
            .iter()
            .map(|s| s.name.as_str())
            .filter(|s| store::can_start(heartbeat, s))
            .collect();
        if skills.is_empty() {
            return Ok(None);
        }
        let mut pipe = ::redis::pipe();
        for s in &skills {
            pipe.zrange_withscores(self.key(&["q", s]), 0, (MAX_SCAN - 1) as isize);
        }
        let queues: Vec<Vec<(String, f64)>> = pipe.query_async(con).await?;
        let mut best: Option<(f64, String, &str)> = None;
        for (skill, entries) in skills.iter().copied().zip(queues) {
            // Usually the head; past it only when the worker refuses it.
            let mut rest = entries.as_slice();
            let mut batch = 1;
            while !rest.is_empty() {
                if best.as_ref().is_some_and(|(b, _, _)| rest[0].1 >= *b) {
                    break; // nothing older here than the best so far
                }
                let (chunk, tail) = rest.split_at(batch.min(rest.len()));
                rest = tail;
                batch = MAX_SCAN;
                if let Some((id, seq)) = self.first_accepted(con, known, skill, chunk).await? {
                    best = Some((seq, id, skill));
                    break;
                }
            }
        }
        Ok(best.map(|(_, id, ty)| (id, ty.to_owned())))
    }

    /// The first of `entries` (queued tasks of `skill`) the worker accepts.
    async fn first_accepted(
        &self,
        con: &mut ConnectionManager,
        known: &Known,
        skill: &str,
        entries: &[(String, f64)],
    ) -> R<Option<(String, f64)>> {
        let plain = !known.catalog.contracts.contains_key(skill);
        let mut pipe = ::redis::pipe();
        for (id, _) in entries {
            pipe.hmget(self.key(&["t", id]), &["r", "p"]);
        }
        let rows: Vec<(Option<String>, Option<String>)> = pipe.query_async(con).await?;
        for ((id, seq), (r, p)) in entries.iter().zip(rows) {
            let accepted = match p {
                // The record is gone: the claim script drops the entry.
                None => true,
                // No schema and no requirements: nothing to refuse.
                Some(_) if plain && r.as_deref().is_none_or(str::is_empty) => true,
                Some(p) => {
                    let task: TaskPayload = parse("task", &p)?;
                    let requirements = super::requirements_of(r.as_deref())?;
                    store::verdict(&known.catalog, &known.registration, &task, &requirements)
                        == Some(None)
                }
            };
            if accepted {
                return Ok(Some((id.clone(), *seq)));
            }
        }
        Ok(None)
    }

    pub(crate) async fn register(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        mut registration: WorkerRegistration,
    ) -> HandlerResult<RegisterReply> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let wid = registration.worker_id.clone();
        let cred = self
            .admit(inner, &mut con, &ctx, false, |_| Some(wid.clone()))
            .await?;
        validate_identifier(&wid, "worker_id").map_err(bad_request)?;
        self.act_as(inner, &mut con, &cred, &ctx, &wid).await?;
        let catalog = h::catalog(inner, std::mem::take(&mut registration.supported_skills))?;
        let hash = registration.skills_hash.clone().unwrap_or_default();
        let answer: String = scripts()
            .register
            .arg(&self.prefix)
            .arg(&wid)
            .arg(json(&registration))
            .arg(json(&catalog.skills))
            .arg(hash)
            .arg(catalog.skills.len())
            .arg(ctx.protocol().as_str())
            .arg(now_ms())
            .arg(inner.config.max_workers)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        if answer == "full" {
            return Err(HandlerError::unavailable(format!(
                "too many workers (at most {})",
                inner.config.max_workers
            )));
        }
        if let Some(token) = &ctx.token {
            let () = con
                .pset_ex(
                    self.key(&["own", &super::digest(token)]),
                    &wid,
                    u64::try_from(millis(inner.config.refresh_token_ttl).max(1)).unwrap_or(1),
                )
                .await
                .map_err(unavailable)?;
        }
        inner.work.notify_waiters();
        inner.events.notify_waiters();
        Ok(RegisterReply {
            version: Some(ctx.protocol().as_str().to_owned()),
            ..RegisterReply::default()
        })
    }

    pub(crate) async fn poll(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        wait: Duration,
    ) -> HandlerResult<Option<TaskPayload>> {
        let inner = &*orch.inner;
        let worker_id = ctx.require_worker_id()?.to_owned();
        // The steps before and after the wait are boxed: a parked poll's future holds
        // only what the wait needs (polls park by the thousand).
        let mut con = Box::pin(self.con_h()).await?;
        Box::pin(self.admit_as(inner, &mut con, &ctx, &worker_id)).await?;
        let until = now_ms().saturating_add(millis(wait));
        let poll_id = self.poll_id();
        let Some(first) = Box::pin(self.poll_mark(&mut con, &worker_id, &poll_id, Some(until)))
            .await
            .map_err(unavailable)?
        else {
            return Err(not_registered(&worker_id));
        };
        let poll_epoch = first.epoch.parse().unwrap_or(0);
        let view = std::sync::Mutex::new(Some(first));
        inner.lock().pending_polls += 1;
        let _guard = SharedPollGuard {
            orch,
            con: con.clone(),
            worker_id: &worker_id,
            poll_id: &poll_id,
        };
        inner.events.notify_waiters();
        // Every process's enqueues come through the work signal (no skill waiters).
        inner
            .park(
                wait,
                || None,
                || {
                    let mut con = con.clone();
                    let worker_id = worker_id.as_str();
                    let view = &view;
                    async move {
                        let lease = now_ms().checked_add(millis(inner.config.claim_lease));
                        let mut known = view.lock().unwrap_or_else(|p| p.into_inner()).take();
                        let claimed = Box::pin(
                            self.claim(inner, &mut con, worker_id, lease, poll_epoch, &mut known),
                        )
                        .await;
                        *view.lock().unwrap_or_else(|p| p.into_inner()) = known;
                        match claimed {
                            Ok(task) => Ok(task),
                            Err(ClaimError::Gone) => Err(not_registered(worker_id)),
                            Err(ClaimError::Storage(e)) => Err(unavailable(e)),
                        }
                    }
                },
            )
            .await
    }

    pub(crate) async fn result(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        result: TaskResult,
    ) -> HandlerResult<ResultOutcome> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let wid = result.worker_id.clone();
        self.admit_as(inner, &mut con, &ctx, &wid).await?;
        let result = self
            .held_to_contract(inner, &mut con, result)
            .await
            .map_err(unavailable)?;
        let answer: String = scripts()
            .result
            .arg(&self.prefix)
            .arg(&result.task_id)
            .arg(&wid)
            .arg(json(&result))
            .arg(result.status.as_str())
            .arg(now_ms())
            .arg(inner.config.max_finished_tasks)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        inner.events.notify_waiters();
        Ok(verdict_of(&answer).outcome(&result.task_id))
    }

    /// A success whose data its worker's `output_schema` rejects becomes a
    /// `CONTRACT_VIOLATION_ERROR` failure.
    async fn held_to_contract(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        result: TaskResult,
    ) -> R<TaskResult> {
        if result.status != rxon_core::TaskStatus::Success {
            return Ok(result);
        }
        let Some(contract) = self
            .contract_of(inner, con, &result.worker_id, &result.task_id)
            .await?
        else {
            return Ok(result);
        };
        Ok(h::held_to(&contract, result))
    }

    /// The contract `worker_id` declared for the type of task `task_id`, if any.
    async fn contract_of(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        worker_id: &str,
        task_id: &str,
    ) -> R<Option<Arc<rxon_schema::Contract>>> {
        let ty: Option<String> = con.hget(self.key(&["t", task_id]), "type").await?;
        let cv: Option<String> = con.hget(self.key(&["w", worker_id]), "cv").await?;
        let (Some(ty), Some(cv)) = (ty, cv) else {
            return Ok(None);
        };
        let known = self.known(inner, con, worker_id, &cv).await?;
        Ok(known.catalog.contracts.get(&ty).cloned())
    }

    pub(crate) async fn heartbeat(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        heartbeat: Option<Heartbeat>,
    ) -> HandlerResult<HeartbeatReply> {
        let inner = &*orch.inner;
        let worker_id = ctx.require_worker_id()?.to_owned();
        let mut con = self.con_h().await?;
        self.admit_as(inner, &mut con, &ctx, &worker_id).await?;
        let checked = checked_heartbeat(inner, heartbeat)?;
        let (listed, body, skills, hash, nsk) = match &checked {
            None => (
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                0,
            ),
            Some((hb, catalog)) => (
                json(&hb.current_tasks),
                json(hb),
                catalog
                    .as_ref()
                    .map(|c| json(&c.skills))
                    .unwrap_or_default(),
                hb.skills_hash.clone().unwrap_or_default(),
                catalog.as_ref().map_or(0, |c| c.skills.len()),
            ),
        };
        let out: Vec<String> = scripts()
            .heartbeat
            .arg(&self.prefix)
            .arg(&worker_id)
            .arg(now_ms())
            .arg(listed)
            .arg(body)
            .arg(skills)
            .arg(hash)
            .arg(nsk)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        inner.work.notify_waiters();
        Ok(match out.split_first() {
            Some((full, cancels)) if full != "gone" => HeartbeatReply {
                cancel_task_ids: cancels.to_vec(),
                require_full_sync: full == "1",
                ..HeartbeatReply::default()
            },
            _ => HeartbeatReply {
                require_full_sync: true,
                ..HeartbeatReply::default()
            },
        })
    }

    /// Records a report about `task_id` (progress `tp`, events `te`); 404 for an
    /// unknown task.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        inner: &Inner,
        con: &mut ConnectionManager,
        task_id: &str,
        holder: Option<&str>,
        list: &str,
        item: String,
    ) -> HandlerResult<()> {
        let recorded: i64 = scripts()
            .record
            .arg(&self.prefix)
            .arg(task_id)
            .arg(holder.unwrap_or_default())
            .arg(list)
            .arg(&item)
            .arg(inner.config.progress_history)
            .arg(now_ms())
            .invoke_async(con)
            .await
            .map_err(unavailable)?;
        if recorded == 0 {
            return Err(HandlerError::not_found(format!(
                "no task {:?}",
                h::shown(task_id)
            )));
        }
        let channel = if list == "tp" { "prog" } else { "evt" };
        let _: i64 = con
            .publish(self.key(&[channel]), format!("{}\n{item}", self.origin))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The holder and job of a task (`None`: no such task).
    async fn holder_and_job(
        &self,
        con: &mut ConnectionManager,
        task_id: &str,
    ) -> R<Option<(Option<String>, String)>> {
        let (ph, h, job): (Option<String>, Option<String>, Option<String>) = con
            .hmget(self.key(&["t", task_id]), &["ph", "h", "job"])
            .await?;
        let Some(ph) = ph else { return Ok(None) };
        let holder = h.filter(|_| ph == "r" || ph == "c");
        Ok(Some((holder, job.unwrap_or_default())))
    }

    pub(crate) async fn progress(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        progress: ProgressUpdatePayload,
    ) -> HandlerResult<()> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        // 1.0b3 progress names no worker: the task's holder is the one acting.
        let holder = self
            .holder_and_job(&mut con, &progress.task_id)
            .await
            .map_err(unavailable)?
            .and_then(|(h, _)| h);
        let cred = self
            .admit(inner, &mut con, &ctx, false, |_| holder.clone())
            .await?;
        if let Some(holder) = &holder {
            self.act_as(inner, &mut con, &cred, &ctx, holder).await?;
        }
        self.record(
            inner,
            &mut con,
            &progress.task_id,
            holder.as_deref(),
            "tp",
            json(&progress),
        )
        .await?;
        // No subscriber is not an error.
        let _ = inner.progress_tx.send(progress);
        Ok(())
    }

    pub(crate) async fn event(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        event: WorkerEventPayload,
    ) -> HandlerResult<()> {
        let inner = &*orch.inner;
        let progress = checked_event(&event)?;
        let mut con = self.con_h().await?;
        let sender = event.worker_id.clone();
        self.admit_as(inner, &mut con, &ctx, &sender).await?;
        let task_id = self.event_target(&mut con, &event).await?;
        let contract = self
            .contract_of(inner, &mut con, &sender, &task_id)
            .await
            .map_err(unavailable)?;
        check_event_payload(contract.as_deref(), &event)?;
        match progress {
            Some(p) => {
                self.record(inner, &mut con, &task_id, Some(&sender), "tp", json(&p))
                    .await?;
                let _ = inner.progress_tx.send(p);
            }
            None => {
                self.record(inner, &mut con, &task_id, Some(&sender), "te", json(&event))
                    .await?;
                let _ = inner.event_tx.send(event);
            }
        }
        Ok(())
    }

    /// The task an event is for (see the in-memory orchestrator's `event_target`).
    async fn event_target(
        &self,
        con: &mut ConnectionManager,
        event: &WorkerEventPayload,
    ) -> HandlerResult<String> {
        if let Some(task_id) = event.task_id() {
            let task = self
                .holder_and_job(con, task_id)
                .await
                .map_err(unavailable)?;
            check_event_task(
                event,
                task_id,
                task.as_ref().map(|(h, j)| (h.as_deref(), j.as_str())),
            )?;
            return Ok(task_id.to_owned());
        }
        let job = event_job(event)?;
        let held: Vec<String> = con
            .lrange(self.key(&["wc", &event.worker_id]), 0, -1)
            .await
            .map_err(unavailable)?;
        for id in held {
            let of_job: Option<String> = con
                .hget(self.key(&["t", &id]), "job")
                .await
                .map_err(unavailable)?;
            if of_job.as_deref() == Some(job) {
                return Ok(id);
            }
        }
        Err(no_task_of_job(&event.worker_id, job))
    }

    pub(crate) async fn envelope_key(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
    ) -> HandlerResult<Option<String>> {
        let inner = &*orch.inner;
        let worker_id = ctx.require_worker_id()?;
        if let Some(own) = inner.config.worker_token_of(worker_id) {
            return Ok(Some(own.to_owned()));
        }
        let root = match ctx.token.as_deref() {
            Some(t) => {
                let mut con = self.con_h().await?;
                self.root_of(inner, &mut con, t).await?
            }
            None => None,
        };
        Ok(root.or_else(|| inner.config.tokens.first().cloned()))
    }

    pub(crate) async fn authenticate(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
    ) -> HandlerResult<()> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let token = ctx.token.as_deref();
        let issued = match token {
            Some(t) if looks_issued(t) => self
                .lookup_token(inner, &mut con, "tok", t)
                .await
                .map_err(unavailable)?,
            _ => None,
        };
        // Not counted against the rate limit, as in memory.
        let cred =
            auth::authenticate_with(&inner.config, issued.as_ref(), token, true, Instant::now())?;
        if let Some(worker_id) = &ctx.worker_id {
            self.act_as(inner, &mut con, &cred, &ctx, worker_id).await?;
        }
        Ok(())
    }

    pub(crate) async fn token(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
    ) -> HandlerResult<TokenResponse> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let cred = self
            .admit(inner, &mut con, &ctx, true, |c| {
                c.worker().map(str::to_owned)
            })
            .await?;
        let worker_id = ctx
            .worker_id
            .clone()
            .or_else(|| cred.worker().map(str::to_owned));
        if let Some(id) = &worker_id {
            self.act_as(inner, &mut con, &cred, &ctx, id).await?;
        }
        let refresh = if ctx.protocol().signs() {
            Refresh::New
        } else {
            Refresh::None
        };
        let root = match ctx.token.as_deref() {
            Some(t) => self.root_of(inner, &mut con, t).await?,
            None => None,
        };
        self.mint(inner, &mut con, worker_id, root, refresh).await
    }

    pub(crate) async fn refresh(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
        refresh_token: String,
    ) -> HandlerResult<TokenResponse> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let issued = self
            .lookup_token(inner, &mut con, "rt", &refresh_token)
            .await
            .map_err(unavailable)?;
        let (worker_id, root) =
            auth::redeem_with(issued.as_ref(), ctx.worker_id.as_deref(), Instant::now())?;
        if let Some(id) = &worker_id {
            self.rate_limit(inner, &mut con, id).await?;
        }
        self.mint(
            inner,
            &mut con,
            worker_id,
            root,
            Refresh::Keep(refresh_token),
        )
        .await
    }

    pub(crate) async fn commands(
        &self,
        orch: &Orchestrator,
        ctx: RequestContext,
    ) -> HandlerResult<Box<dyn CommandReceiver>> {
        let inner = &*orch.inner;
        let mut con = self.con_h().await?;
        let cred = self.admit(inner, &mut con, &ctx, false, |_| None).await?;
        // The reference worker opens `/_worker/ws` without its id: fall back to the
        // worker that registered with this token.
        let owner: Option<String> = match &ctx.token {
            Some(t) => con
                .get(self.key(&["own", &super::digest(t)]))
                .await
                .map_err(unavailable)?,
            None => None,
        };
        let proven = cred.worker().map(str::to_owned);
        let Some(worker_id) = ctx.worker_id.clone().or(proven).or(owner) else {
            return Err(HandlerError::bad_request(
                "a command channel needs the worker id (use /_worker/ws/{worker_id}, \
                 or register with this token first)",
            ));
        };
        validate_identifier(&worker_id, "worker_id").map_err(bad_request)?;
        self.act_as(inner, &mut con, &cred, &ctx, &worker_id)
            .await?;
        // A worker that reconnects gets the cancels it has not acknowledged yet.
        let pending: Vec<String> = con
            .lrange(self.key(&["wx", &worker_id]), 0, -1)
            .await
            .map_err(unavailable)?;
        let mut jobs = Vec::with_capacity(pending.len());
        for id in &pending {
            let job: Option<String> = con
                .hget(self.key(&["t", id]), "job")
                .await
                .map_err(unavailable)?;
            jobs.push(job);
        }
        let pending = pending
            .into_iter()
            .zip(jobs)
            .map(|(id, job)| WorkerCommand::cancel_task(id, job));
        let rx = inner
            .lock()
            .open_channel(&inner.config, &worker_id, pending)?;
        inner.events.notify_waiters();
        Ok(Box::new(ChannelReceiver::new(rx, orch, worker_id)) as Box<dyn CommandReceiver>)
    }

    /// A cancel a listener could not write goes back into the worker's heartbeat list
    /// (and so into its next channel), unless the task has moved on.
    pub(crate) fn undelivered(&self, worker_id: String, task_id: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(con) = self.conn.get().cloned() else {
            return;
        };
        let prefix = self.prefix.clone();
        handle.spawn(async move {
            let mut con = con;
            let _: R<i64> = scripts()
                .misc
                .arg(prefix)
                .arg("undelivered")
                .arg(worker_id)
                .arg(task_id)
                .invoke_async(&mut con)
                .await;
        });
    }
}

/// Counts a poll as waiting in this process while it exists; its end is contact
/// from its worker (recorded without waiting for it).
struct SharedPollGuard<'a> {
    orch: &'a Orchestrator,
    con: ConnectionManager,
    worker_id: &'a str,
    poll_id: &'a str,
}

impl Drop for SharedPollGuard<'_> {
    fn drop(&mut self) {
        let inner = &*self.orch.inner;
        {
            let mut st = inner.lock();
            st.pending_polls = st.pending_polls.saturating_sub(1);
        }
        inner.events.notify_waiters();
        let Some(redis) = inner.redis.as_ref() else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let mut con = self.con.clone();
            let prefix = redis.prefix().to_owned();
            let worker_id = self.worker_id.to_owned();
            let poll_id = self.poll_id.to_owned();
            handle.spawn(async move {
                let _: R<Vec<String>> = scripts()
                    .poll
                    .arg(prefix)
                    .arg(worker_id)
                    .arg(now_ms())
                    .arg("")
                    .arg(poll_id)
                    .invoke_async(&mut con)
                    .await;
            });
        }
    }
}
