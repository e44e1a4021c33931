//! `tollgate demo`: a zero-setup tour. Embedded SQLite in a temporary directory, the built-in
//! echo upstream, one partner and one key, and the `curl` lines to try.

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
}

/// What the demo set up.
pub struct Demo {
    pub gateway: Gateway,
    pub partner_token: String,
    pub key: String,
    _echo: echo::EchoServer,
    _dir: tempfile::TempDir,
}

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
    let text = format!(
        "[listen]\nproxy = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\n\
         [store]\nurl = \"sqlite://{}\"\n\
         [upstream]\nurl = \"http://{}\"\nprofile = \"generic\"\n\
         [security]\nsecret = \"{}\"\n",
        preferred_port(8080),
        preferred_port(8081),
        dir.path().join("demo.db").display(),
        echo.addr,
        // A throwaway secret: the demo's store lives only as long as the process.
        URL_SAFE_NO_PAD.encode(secret::random_bytes()),
    );
    let config = config::parse(&text, &|_| None)?;
    let gateway = Gateway::start(&config).await?;
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
    Ok(Demo {
        gateway,
        partner_token,
        key: created.secret,
        _echo: echo,
        _dir: dir,
    })
}

impl Demo {
    /// The one-line JSON summary printed by `demo --json`.
    pub fn json_line(&self) -> String {
        serde_json::json!({
            "proxy": format!("http://{}", self.gateway.proxy_addr),
            "api": format!("http://{}", self.gateway.api_addr),
            "partner_token": self.partner_token,
            "key": self.key,
        })
        .to_string()
    }

    /// The human-readable tour.
    pub fn banner(&self) -> String {
        let proxy = format!("http://{}", self.gateway.proxy_addr);
        let api = format!("http://{}", self.gateway.api_addr);
        let key = &self.key;
        let token = &self.partner_token;
        format!(
            "Tollgate demo is running (embedded SQLite in a temp dir, built-in echo upstream).\n\
             \n  proxy : {proxy}\n  api   : {api}\n  key   : {key}\n  partner token: {token}\n\
             \nTry it:\n\
             \n  # a good call: the echo upstream shows what it received (your key is stripped)\
             \n  curl -s {proxy}/hello -H 'Authorization: Bearer {key}'\
             \n\n  # no key: 401 missing_credentials\
             \n  curl -s {proxy}/hello\
             \n\n  # a wrong key: 401 invalid_key\
             \n  curl -s {proxy}/hello -H 'Authorization: Bearer cr_wrong'\
             \n\n  # mint another key through the reseller API\
             \n  curl -s -X POST {api}/api/v1/reseller/keys -H 'Authorization: Bearer {token}' \\\
             \n       -H 'Content-Type: application/json' -d '{{\"description\":\"client-a\",\"daily_cost_limit_usd\":5}}'\
             \n\n  # metrics\
             \n  curl -s {api}/metrics | grep tollgate_requests_total\
             \n\nPress Ctrl-C to stop.\n"
        )
    }
}
