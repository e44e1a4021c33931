//! `tollgate demo`: a zero-setup tour. Embedded SQLite in a temporary directory, the built-in
//! echo upstream, one partner with one key, a Gateway3 account with an `admin` key pair, an
//! operator token, and the `curl` lines to try.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config;
use crate::domain::ip::IpAllowList;
use crate::domain::key::KeyLimits;
use crate::domain::permission::{Permission, PermissionSet};
use crate::domain::secret;
use crate::echo;
use crate::gateway::{Gateway, StartError};
use crate::manage::{KeyKind, ManageError, NewKey};

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("cannot start the echo upstream: {0}")]
    Echo(#[source] std::io::Error),
    #[error("demo config is invalid: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Manage(#[from] ManageError),
    #[error("cannot hash the operator token: {0}")]
    Hash(#[from] secret::HashError),
}

/// What the demo set up.
pub struct Demo {
    pub gateway: Gateway,
    pub partner_token: String,
    pub key: String,
    /// A token of the operator surface (`/api/v1/admin`).
    pub operator_token: String,
    /// `access_key:access_secret` of the demo account's `admin` key (the Gateway3 account API).
    pub account_key: String,
    /// A one-time link that signs the demo partner into the console (valid ten minutes).
    pub console: String,
    _echo: echo::EchoServer,
    _dir: tempfile::TempDir,
}

/// The demo's management call budgets (per minute, per day, key creations per hour): high
/// enough for a fuzzer to explore every operation (`tests/api/fuzz.sh`). A real deployment
/// keeps the QCode defaults of 60, 1000 and 5.
const DEMO_CALLS: u32 = 1_000_000;

/// The demo partner's starting balance: 10 USD, a thousand calls of `/priced/*` at 0.01.
const DEMO_BALANCE_MICROS: i64 = 10_000_000;

/// `port` on 127.0.0.1 if it is free right now, else 0 (an ephemeral port).
fn preferred_port(port: u16) -> u16 {
    match StdListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => port,
        Err(_) => 0,
    }
}

/// Starts the demo gateway (on 8080/8081 when free, else ephemeral ports).
pub async fn start() -> Result<Demo, DemoError> {
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    let echo = echo::spawn(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(DemoError::Echo)?;
    let operator_token = format!("op_{}", URL_SAFE_NO_PAD.encode(secret::random_bytes()));
    let operator_phc = secret::hash_token(&operator_token)?;
    // A throwaway secret: the demo's store lives only as long as the process.
    let store_secret = URL_SAFE_NO_PAD.encode(secret::random_bytes());
    let config_for = |proxy: u16, api: u16| {
        let text = format!(
            "[listen]\nproxy = \"127.0.0.1:{proxy}\"\napi = \"127.0.0.1:{api}\"\n\
             [store]\nurl = \"sqlite://{}\"\n\
             [upstream]\nurl = \"http://{}\"\nprofile = \"generic\"\n\
             [security]\nsecret = \"{store_secret}\"\noperator_tokens = [\"{operator_phc}\"]\n\
             [management]\ncalls_per_minute = {DEMO_CALLS}\ncalls_per_day = {DEMO_CALLS}\n\
             key_creations_per_hour = {DEMO_CALLS}\n\
             [[routes]]\npath = \"/priced/*\"\npermission = \"read\"\ncost_usd = \"0.01\"\n",
            dir.path().join("demo.db").display(),
            echo.addr,
        );
        config::parse(&text, &|_| None)
    };
    // 8080/8081 when free; if another process takes one between the check and the bind (two
    // demos starting at once), ephemeral ports.
    let gateway =
        match Gateway::start(&config_for(preferred_port(8080), preferred_port(8081))?).await {
            Err(StartError::Bind { .. }) => Gateway::start(&config_for(0, 0)?).await?,
            started => started?,
        };
    let manager = &gateway.manager;
    let (partner, partner_token) = manager.create_partner("demo").await?;
    let account = manager.default_account(partner.id).await?;
    let created = manager
        .create_key(NewKey {
            account_id: account.id,
            partner_id: partner.id,
            name: Some("demo".into()),
            label: Some("demo key".into()),
            description: Some("created by tollgate demo".into()),
            permissions: PermissionSet::from_slice(&[Permission::Read, Permission::Write]),
            ip_whitelist: IpAllowList::default(),
            expiration_date: None,
            limits: KeyLimits::default(),
            kind: KeyKind::Token,
            created_by: "demo".into(),
        })
        .await?;
    let account_key = account_pair(manager, partner.id).await?;
    // Something to spend on `/priced/*`, so spend and the console's chart move.
    manager.top_up(partner.id, DEMO_BALANCE_MICROS).await?;
    let code = gateway.console_logins.issue(&partner_token);
    let console = format!("http://{}/console/#login={code}", gateway.api_addr);
    Ok(Demo {
        gateway,
        partner_token,
        key: created.secret,
        operator_token,
        account_key,
        console,
        _echo: echo,
        _dir: dir,
    })
}

/// A Gateway3 account `demo-user` of the partner with an `admin` key pair, as
/// `access_key:access_secret`.
async fn account_pair(
    manager: &crate::manage::Manager,
    partner: uuid::Uuid,
) -> Result<String, DemoError> {
    let account = manager
        .create_account(crate::manage::accounts::NewAccount {
            partner_id: partner,
            external_id: "demo-user".into(),
            email: Some("demo@example.com".into()),
            name: Some("demo user".into()),
        })
        .await?;
    let created = manager
        .create_key(NewKey {
            account_id: account.id,
            partner_id: partner,
            name: Some("demo-admin".into()),
            label: None,
            description: None,
            permissions: PermissionSet::from_slice(&[Permission::Admin]),
            ip_whitelist: IpAllowList::default(),
            expiration_date: None,
            limits: KeyLimits::default(),
            kind: KeyKind::Pair,
            created_by: "demo".into(),
        })
        .await?;
    let access_key = created.key.credential.access_key().unwrap_or_default();
    Ok(format!("{access_key}:{}", created.secret))
}

impl Demo {
    /// The one-line JSON summary printed by `demo --json`.
    pub fn json_line(&self) -> String {
        serde_json::json!({
            "proxy": format!("http://{}", self.gateway.proxy_addr),
            "api": format!("http://{}", self.gateway.api_addr),
            "partner_token": self.partner_token,
            "key": self.key,
            "operator_token": self.operator_token,
            "account_key": self.account_key,
            "console": self.console,
        })
        .to_string()
    }

    /// The human-readable tour.
    pub fn banner(&self) -> String {
        let proxy = format!("http://{}", self.gateway.proxy_addr);
        let api = format!("http://{}", self.gateway.api_addr);
        let key = &self.key;
        let token = &self.partner_token;
        let operator = &self.operator_token;
        let pair = &self.account_key;
        let console = &self.console;
        format!(
            "Tollgate demo is running (embedded SQLite in a temp dir, built-in echo upstream).\n\
             \n  proxy : {proxy}\n  api   : {api}\n  key   : {key}\n  partner token: {token}\
             \n  operator token: {operator}\n  account key pair (Gateway3 account API): {pair}\
             \n\n  console: {console}\
             \n           (signs the demo partner in, once, within ten minutes; then sign in with the token)\n\
             \nTry it:\n\
             \n  # a good call: the echo upstream shows what it received (your key is stripped)\
             \n  curl -s {proxy}/hello -H 'Authorization: Bearer {key}'\
             \n\n  # a priced call: 0.01 USD from the partner's 10 USD balance (watch spend in the console)\
             \n  curl -s {proxy}/priced/hello -H 'Authorization: Bearer {key}'\
             \n\n  # no key: 401 missing_credentials\
             \n  curl -s {proxy}/hello\
             \n\n  # a wrong key: 401 invalid_key\
             \n  curl -s {proxy}/hello -H 'Authorization: Bearer cr_wrong'\
             \n\n  # mint another key through the reseller API\
             \n  curl -s -X POST {api}/api/v1/reseller/keys -H 'Authorization: Bearer {token}' \\\
             \n       -H 'Content-Type: application/json' -d '{{\"description\":\"client-a\",\"daily_cost_limit_usd\":5}}'\
             \n\n  # the Gateway3 account API, with the account's admin key pair\
             \n  curl -s {api}/api/v0/stats -u '{pair}'\
             \n\n  # the operator surface\
             \n  curl -s {api}/api/v1/admin/partners -H 'Authorization: Bearer {operator}'\
             \n\n  # every operation: {api}/openapi.json\
             \n\n  # metrics\
             \n  curl -s {api}/metrics | grep tollgate_requests_total\
             \n\nPress Ctrl-C to stop.\n"
        )
    }
}
