//! The `tollgate` command line: `serve` (default), `demo`, `check`, `hash-token`, `partner`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tollgate::config::{self, model::Config, model::LogFormat};
use tollgate::gateway::{self, Gateway};

/// mimalloc: the proxy allocates small, short-lived buffers on every request; under `perf`
/// glibc's malloc and free took ~8 % of an allowed request's CPU, mimalloc ~2 %.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Authenticating reverse-proxy gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file for the default `serve` command.
    #[arg(long, global = true, default_value = "config/tollgate.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Serve,
    /// Zero-setup tour: temp SQLite, built-in echo upstream, a partner and a key to try.
    Demo {
        /// Print one JSON line {"proxy","api","partner_token","key"} instead of the tour.
        #[arg(long)]
        json: bool,
    },
    /// Validate a config file; print every error with its field path.
    Check,
    /// Read a token on stdin, print its argon2id hash for `security.operator_tokens`.
    HashToken,
    /// Manage partners on the configured store.
    #[command(subcommand)]
    Partner(PartnerCommand),
}

#[derive(Subcommand)]
enum PartnerCommand {
    /// Create a partner and print its `rsk_` token once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace a partner's token; the old one stops working at once.
    RotateToken {
        #[arg(long)]
        id: uuid::Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Check => Ok(check(&cli.config)),
        Command::HashToken => hash_token(),
        Command::Demo { json } => {
            init_logging(LogFormat::Text, "info");
            runtime()?.block_on(demo(json))
        }
        Command::Serve => {
            let config = load(&cli.config)?;
            init_logging(config.log.format, &config.log.level);
            runtime()?.block_on(serve(config))
        }
        Command::Partner(cmd) => {
            let config = load(&cli.config)?;
            init_logging(config.log.format, "warn");
            runtime()?.block_on(partner(config, cmd))
        }
    }
}

/// The async runtime: multi-threaded, except on a single CPU (e.g. pinned with `taskset`), where
/// a `current_thread` runtime does the same work without the work-stealing machinery.
fn runtime() -> Result<tokio::runtime::Runtime> {
    let single = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn load(path: &std::path::Path) -> Result<Config> {
    config::load(path).map_err(|errs| anyhow::anyhow!("invalid config {}:\n{errs}", path.display()))
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            ExitCode::FAILURE
        }
    }
}

fn hash_token() -> Result<ExitCode> {
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .context("reading stdin")?;
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "no token on stdin");
    println!("{}", tollgate::domain::secret::hash_token(token)?);
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> Result<ExitCode> {
    let gateway = Gateway::start(&config).await?;
    wait_for_signal().await?;
    tracing::info!("signal received: draining");
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn demo(json: bool) -> Result<ExitCode> {
    let demo = tollgate::demo::start().await?;
    if json {
        println!("{}", demo.json_line());
    } else {
        println!("{}", demo.banner());
    }
    wait_for_signal().await?;
    demo.gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn partner(config: Config, cmd: PartnerCommand) -> Result<ExitCode> {
    let (store, hasher) = gateway::open_store(&config).await?;
    let manager = tollgate::manage::Manager {
        store,
        index: Default::default(),
        hasher,
        clock: std::sync::Arc::new(tollgate::domain::clock::SystemClock),
        default_plan: config.default_plan,
        meter: Default::default(),
        verifier: Default::default(),
        write_lock: Default::default(),
    };
    let (id, token, json) = match cmd {
        PartnerCommand::Create { name, json } => {
            let (partner, token) = manager.create_partner(&name).await?;
            (partner.id, token, json)
        }
        PartnerCommand::RotateToken { id, json } => {
            let token = manager
                .rotate_partner_token(id)
                .await?
                .with_context(|| format!("no partner with id {id}"))?;
            (id, token, json)
        }
    };
    if json {
        println!("{}", serde_json::json!({ "id": id, "token": token }));
    } else {
        println!("partner id: {id}\ntoken (shown once, store it safely): {token}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
