//! Progress bars on stderr, only when stderr is a terminal and not `--quiet`/`--json`.

use std::io::IsTerminal;
use std::sync::Mutex;

use backup_core::{Event, Observer, Phase};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per phase.
pub struct Bars {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool, json: bool) -> Self {
        Bars { enabled: !quiet && !json && std::io::stderr().is_terminal(), bar: Mutex::new(None) }
    }
}

fn label(p: Phase) -> &'static str {
    match p {
        Phase::Snapshot => "snapshot",
        Phase::Upload => "backup",
        Phase::Verify => "verify",
        Phase::Load => "restore",
        Phase::Finish => "finish",
        Phase::Delete => "delete",
    }
}

impl Observer for Bars {
    fn on_event(&self, event: &Event) {
        if !self.enabled {
            if let Event::Note { message } = event {
                tracing::info!("{message}");
            }
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::PhaseStarted { phase, total_bytes } => {
                if let Some(b) = slot.take() {
                    b.finish_and_clear();
                }
                let b = match total_bytes {
                    Some(t) => ProgressBar::with_draw_target(Some(*t), ProgressDrawTarget::stderr())
                        .with_style(
                            ProgressStyle::with_template(
                                "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        ),
                    None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                        ProgressStyle::with_template("{prefix:>9} {spinner} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                b.set_prefix(label(*phase));
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                *slot = Some(b);
            }
            Event::Advanced { bytes, .. } => {
                if let Some(b) = slot.as_ref() {
                    b.inc(*bytes);
                }
            }
            Event::PhaseFinished { .. } => {
                if let Some(b) = slot.take() {
                    b.finish_and_clear();
                }
            }
            Event::Note { message } => match slot.as_ref() {
                Some(b) => b.println(format!("note: {message}")),
                None => eprintln!("note: {message}"),
            },
            Event::ObjectDone { .. } => {}
        }
    }
}
