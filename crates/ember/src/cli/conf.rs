//! `ember conf`: every configuration key Ember reads, from the registries of all crates.

use clap::Args;
use ember_rpc::ConfigEntryDoc;

/// Options of `ember conf`.
#[derive(Debug, Args)]
pub(crate) struct ConfArgs {
    /// Print a Markdown table (as in README.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

/// The Markdown table of every configuration key, as README.md shows it.
pub fn configuration_markdown() -> String {
    ember_rpc::conf::render_markdown_table(&all_entries())
}

/// Every key of every crate, sorted by key.
pub(crate) fn all_entries() -> Vec<ConfigEntryDoc> {
    let mut entries = ember_rpc::env::config_entries();
    entries.extend(ember_deploy::config::config_entries());
    entries.extend(ember_deploy::master::config::config_entries());
    entries.extend(ember_deploy::worker::config::config_entries());
    entries.extend(ember_deploy::client::config_entries());
    entries.extend(ember_core::config::config_entries());
    entries.sort_by_key(|e| e.key());
    entries.dedup_by_key(|e| e.key());
    entries
}

pub(crate) fn run(args: ConfArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let entries = all_entries();
    let mut text = String::new();
    if args.markdown {
        text = configuration_markdown();
    } else {
        for e in entries {
            text.push_str(&format!(
                "{}  [{}] default: {}{}\n    {}\n",
                e.display_key(),
                e.type_name(),
                e.default_text().unwrap_or("(none)"),
                e.env().map(|v| format!(", env {v}")).unwrap_or_default(),
                e.doc()
            ));
        }
    }
    // A reader that stops early (`ember conf | head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
