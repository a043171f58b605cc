//! The entry point: parses the command line, sets up logging (standard error or syslog), runs
//! the command ([`ovs_autoattach::run`]) and maps its outcome to the exit code: 0 done, 1 a
//! runtime failure or something found, 2 a usage or configuration error (nothing touched).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ovs_autoattach::cli::{Cli, LogTarget};
use ovs_autoattach::error::UsageError;
use ovs_autoattach::host::syslog;

fn main() -> ExitCode {
    // The caller's umask (a hook's, or the preload library's caller's) must not decide the modes
    // of what the tool creates: 022, before anything else runs. Every directory and file is also
    // created with an explicit mode.
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe { libc::umask(0o022) };
    let cli = Cli::parse();
    init_logging(&cli);
    match ovs_autoattach::run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if e.is::<ovs_autoattach::error::Finished>() => ExitCode::from(
            e.downcast_ref::<ovs_autoattach::error::Finished>()
                .map_or(1, |f| f.0),
        ),
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(if e.is::<UsageError>() { 2 } else { 1 })
        }
    }
}

/// Plain lines on stderr, `ovs-autoattach: [level: ]message`: journald adds the time, and the
/// Proxmox task log shows hookscript output as it is. With `--log syslog` the same lines, with
/// the same filter, go to the system log instead, and nothing to stderr (see [`syslog`]).
fn init_logging(cli: &Cli) {
    let level = match (cli.verbose, cli.quiet) {
        (true, _) => log::LevelFilter::Debug,
        (_, true) => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level)
        .parse_env(env_logger::Env::new().filter("OVS_AUTOATTACH_LOG"));
    if cli.log == LogTarget::Syslog {
        syslog::init(builder.build()).expect("the logger is set once");
        return;
    }
    builder
        .format(|f, record| {
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug => "debug: ",
                log::Level::Trace => "trace: ",
            };
            writeln!(f, "ovs-autoattach: {level}{}", record.args())
        })
        .init();
}
