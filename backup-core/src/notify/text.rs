//! The text of notifications: an alert line, an e-mail's subject and body (which every channel's
//! text starts from). Rendering only; delivery is `notify` (and `mail` for SMTP).

use super::{AlertLine, Notification, Outcome, Transition, human_secs};

impl AlertLine {
    /// `FAILING: check [repo] (database db): expected X, found Y`, `RECOVERED: ... after failing
    /// for 3.2h`, `STILL FAILING (for 2.0d): ...`.
    pub fn text(&self) -> String {
        let repo = self.repo.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default();
        let db = self.database.as_deref().map(|d| format!(" (database {d})")).unwrap_or_default();
        let what = format!(
            "expected {}, found {}",
            self.expected.as_deref().unwrap_or("-"),
            self.found.as_deref().unwrap_or("-")
        );
        match self.transition {
            Transition::Failing => format!("FAILING: {}{repo}{db}: {what}", self.check),
            Transition::StillFailing => format!(
                "STILL FAILING (for {}): {}{repo}{db}: {what}",
                human_secs(self.failing_secs),
                self.check
            ),
            Transition::Recovered => format!(
                "RECOVERED: {}{repo}{db}: healthy again after failing for {} (since {})",
                self.check,
                human_secs(self.failing_secs),
                self.failing_since.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}

impl Notification {
    /// The e-mail subject every channel's text starts from: `[dbbackup] create failure on
    /// HOST: FAILING: create (database app)`.
    pub fn subject(&self) -> String {
        let host = self.host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
        let mut lines = self.message.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next().unwrap_or("");
        // The first line up to its details: a subject stays short, the body says everything.
        let head = first.split(": expected ").next().unwrap_or(first);
        let head: String = head.chars().take(160).collect();
        let more = lines.count();
        let more = if more > 0 { format!(" (+{more} more)") } else { String::new() };
        format!("[dbbackup] {} {}{host}: {head}{more}", self.command, self.outcome.as_str())
    }

    /// The plain-text body of the e-mail: each state change's check, expected, found and since
    /// when, the event details, repositories, database, host and time.
    pub fn body(&self) -> String {
        let mut b = String::new();
        b.push_str(&self.message);
        b.push_str("\n\n");
        for a in &self.alerts {
            let what = match a.transition {
                Transition::Failing => "FAILING",
                Transition::StillFailing => "STILL FAILING",
                Transition::Recovered => "RECOVERED",
            };
            b.push_str(&format!("{what}: {}\n", a.check));
            if let Some(r) = &a.repo {
                b.push_str(&format!("  repository: {r}\n"));
            }
            if let Some(d) = &a.database {
                b.push_str(&format!("  database:   {d}\n"));
            }
            if a.transition == Transition::Recovered {
                b.push_str(&format!(
                    "  was failing for {} (since {})\n\n",
                    human_secs(a.failing_secs),
                    a.failing_since.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            } else {
                b.push_str(&format!("  expected:   {}\n", a.expected.as_deref().unwrap_or("-")));
                b.push_str(&format!("  found:      {}\n", a.found.as_deref().unwrap_or("-")));
                b.push_str(&format!(
                    "  failing since {} ({})\n\n",
                    a.failing_since.format("%Y-%m-%d %H:%M:%S UTC"),
                    human_secs(a.failing_secs)
                ));
            }
        }
        for (k, v) in &self.details {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            b.push_str(&format!("{k}: {v}\n"));
        }
        b.push_str(&format!("command:      {}\noutcome:      {}\n", self.command, self.outcome.as_str()));
        if !self.repos.is_empty() {
            b.push_str(&format!("repositories: {}\n", self.repos.join(", ")));
        }
        if let Some(d) = &self.database {
            b.push_str(&format!("database:     {d}\n"));
        }
        if let Some(h) = &self.host {
            b.push_str(&format!("host:         {h}\n"));
        }
        b.push_str(&format!("at:           {}\n", self.at.format("%Y-%m-%d %H:%M:%S UTC")));
        b.push_str(match self.outcome {
            Outcome::Recovered => "\n-- dbbackup: this check was failing and alerted; it is healthy agaiself.\n",
            Outcome::Critical => "\n-- dbbackup: critical, sent whatever the alert settings say.\n",
            _ => "\n-- dbbackup sends one alert when a check starts failing, a reminder while it stays failing (DBBACKUP_NOTIFY_REPEAT), and one when it recovers.\n",
        });
        b
    }
}
