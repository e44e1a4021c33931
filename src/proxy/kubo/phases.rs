//! The `kubo` profile's hooks: ledger commands (pins, IPNS names) are answered by the ledger
//! after admission; `add` is forwarded with its query and upload cap planned by the ledger,
//! and its pins are recorded once the node has answered.

use std::sync::Arc;

use http::request::Parts;
use http::{Response, Uri};

use super::args::Query;
use super::command::{self, Command};
use super::{AddPlan, Caller, Ctx, Kubo};
use crate::domain::decision::{Denial, DenyCode};
use crate::domain::permission::Permission;
use crate::proxy::ProxyBody;
use crate::proxy::phases::{Cx, Phases, Step};

/// The kubo profile: the node's RPC API with the pin ledger in front.
pub struct KuboProfile(pub Arc<Kubo>);

impl Phases for KuboProfile {
    /// The ledger command called, if any, with its parsed query.
    type Reading = Option<(Command, Query)>;
    /// An `add` under way, with the pins it plans.
    type Exchange = Option<(Ctx, AddPlan)>;

    fn classify(&self, parts: &Parts, path: &str) -> Result<Self::Reading, Denial> {
        let mut query = Query::parse(parts.uri.query());
        let command = command::parse(&parts.method, path, &mut query)?;
        Ok(command.map(|command| (command, query)))
    }

    async fn admitted(
        &self,
        reading: Self::Reading,
        _: &mut Parts,
        uri: &mut Uri,
        content_length: Option<u64>,
        cx: &Cx<'_>,
    ) -> Result<Step<Self::Exchange>, Denial> {
        let Some((command, query)) = reading else {
            return Ok(Step::Forward {
                exchange: None,
                body_limit: cx.max_request_body,
            });
        };
        let ctx = Ctx {
            upstream: cx.upstream.clone(),
            rid: cx.rid.clone(),
            caller: caller(cx),
        };
        if command != Command::Add {
            return Ok(Step::Answer(self.0.serve(ctx, command, query).await?));
        }
        let can_pin = cx.key.permissions.allows(Permission::Pin);
        let plan = self
            .0
            .plan_add(&ctx.caller, &query, content_length, can_pin)?;
        *uri = with_query(uri, &plan.query).ok_or_else(|| Denial::new(DenyCode::BadRequest))?;
        let body_limit = plan
            .body_limit
            .map_or(cx.max_request_body, |room| room.min(cx.max_request_body));
        Ok(Step::Forward {
            exchange: Some((ctx, plan)),
            body_limit,
        })
    }

    async fn finish(
        &self,
        exchange: Self::Exchange,
        resp: Result<Response<ProxyBody>, Denial>,
    ) -> Result<Response<ProxyBody>, Denial> {
        match (resp, exchange) {
            (Ok(resp), Some((ctx, plan))) => self.0.finish_add(ctx, plan, resp).await,
            (resp, _) => resp,
        }
    }
}

/// The account a ledger command acts for, with its plan's limits.
fn caller(cx: &Cx<'_>) -> Caller {
    let plan = cx
        .meter
        .account(cx.key.account_id)
        .and_then(|a| a.plan_id())
        .and_then(|id| cx.plans.get(&id));
    Caller::new(cx.key.account_id, plan, cx.now)
}

/// `uri` with its query replaced.
fn with_query(uri: &Uri, query: &str) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    let pq = format!("{}?{query}", uri.path());
    parts.path_and_query = Some(pq.parse().ok()?);
    Uri::from_parts(parts).ok()
}
