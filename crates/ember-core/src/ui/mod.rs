//! What the driver shows a person: the console progress bar (a web UI comes later).

mod console_progress;

pub use console_progress::{ConsoleProgressBar, format_progress_line, format_stage_bar};
