//! Terminal progress bars (indicatif) for the engines' [`Progress`] trait; hidden when stderr
//! is not a terminal or when output is JSON.

use std::io::IsTerminal;

use hoover_client::Progress;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(enabled: bool) -> Bar {
        let bar = if enabled && std::io::stderr().is_terminal() {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static progress template")
            .progress_chars("=> "),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn begin(&self, items: u64, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_message(format!("{items} files"));
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
