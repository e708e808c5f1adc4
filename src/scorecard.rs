//! `rex report scorecard`: a partner's conformance scorecard for a terminal, read from the
//! database directly (the same figures as `GET /fhir/$partner-scorecard`), with a bar chart of
//! the submissions by day.

use std::fmt::Write;

use rex_server::interactions::scorecard::{Period, Scorecard};
use rex_store::{Store, now_micros};

/// Width of the longest bar of the trend chart, in characters.
const BAR_WIDTH: i64 = 40;

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(clap::Subcommand)]
enum ReportCommand {
    /// A partner's conformance scorecard: submissions, acceptance rate, median time to the first
    /// specialist action, the top failing rules and the trend by day.
    Scorecard(ScorecardArgs),
}

#[derive(clap::Args)]
struct ScorecardArgs {
    /// The partner id (as in the security configuration).
    #[arg(long)]
    partner: String,
    /// First day to count (a FHIR date: 2026-11-01, or 2026-11 for the month's start) [default: the
    /// last 30 days].
    #[arg(long)]
    since: Option<String>,
    /// The database rex serves from: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long = "database", env = "REX_DATABASE_URL", default_value = "sqlite://rex-data/rex.db")]
    database_url: String,
    /// rex's security configuration: the partner must be configured in it. Without it, the partner
    /// must have sent something to this database.
    #[arg(long, env = "REX_SECURITY")]
    security: Option<std::path::PathBuf>,
}

pub async fn run(args: ReportArgs) -> Result<(), String> {
    let ReportCommand::Scorecard(args) = args.command;
    // Opening a SQLite URL creates the file; a report must not invent an empty database.
    if let Some(path) = args.database_url.strip_prefix("sqlite://")
        && !std::path::Path::new(path).exists()
    {
        return Err(format!("no database at {path}"));
    }
    let now = now_micros();
    let period = match &args.since {
        Some(since) => Period::parse(&format!("{since}/"), now).map_err(|e| format!("--since: {}", e.english()))?,
        None => Period::recent(now),
    };
    // As the API answers 404 for a partner it does not know, so does the report (and exits 1),
    // rather than print a scorecard of zeros for a misspelt id.
    if let Some(path) = &args.security {
        let config = rex_auth::AuthConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.partners.get(&args.partner).is_none() {
            return Err(format!("no partner '{}' is configured in {}", args.partner, path.display()));
        }
    }
    let store = Store::connect(&args.database_url).await.map_err(|e| format!("cannot open the database: {e}"))?;
    if args.security.is_none() && !store.knows_partner(&args.partner).await.map_err(|e| e.to_string())? {
        store.close().await;
        return Err(format!(
            "no partner '{}' has sent anything to this database (check the id; --security FILE checks the configuration)",
            args.partner
        ));
    }
    let scorecard = Scorecard::read(&store, &args.partner, period, now).await;
    store.close().await;
    let scorecard = scorecard.map_err(|e| format!("cannot read the scorecard: {e}"))?;
    print!("{}", render(&scorecard));
    Ok(())
}

/// The scorecard as text for a terminal.
fn render(card: &Scorecard) -> String {
    let mut out = String::new();
    let day = |micros: i64| {
        chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default().format("%Y-%m-%d %H:%M").to_string()
    };
    let _ = writeln!(out, "Conformance scorecard of {}", card.partner);
    let _ = writeln!(out, "{} to {} (UTC)", day(card.period.from), day(card.period.to - 1));
    let _ = writeln!(out);
    let rate = card.acceptance_rate().map(|r| format!(" ({:.1} %)", r * 100.0)).unwrap_or_default();
    let _ = writeln!(out, "  submissions  {:>6}", card.submissions);
    let _ = writeln!(out, "  accepted     {:>6}{rate}", card.accepted);
    let _ = writeln!(out, "  refused      {:>6}", card.refused());
    for kind in &card.kinds {
        let _ = writeln!(out, "    {:<10} {:>6} ({} accepted)", kind.kind, kind.submissions, kind.accepted);
    }
    let median = card.median_first_action_seconds.map(duration).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "  referrals    {:>6} ({} acted on; median time to the first specialist action: {median})",
        card.referrals, card.acted_on
    );
    let _ = writeln!(out);
    if card.rules.is_empty() {
        let _ = writeln!(out, "No failing rules.");
    } else {
        let _ = writeln!(out, "Top failing rules (issues, submissions, rule, example location):");
        for rule in &card.rules {
            let location = rule.example_location.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  {:>6} {:>6}  {}  at {location}", rule.count, rule.submissions, rule.rule);
            if let Some(profile) = &rule.profile {
                let _ = writeln!(out, "                 profile {profile}");
            }
        }
    }
    if !card.unknown_profiles.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Profiles claimed that rex does not know (resources, submissions; load the guide with --package):"
        );
        for claim in &card.unknown_profiles {
            let _ = writeln!(out, "  {:>6} {:>6}  {}", claim.count, claim.submissions, claim.profile);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Submissions by day (# accepted, x refused):");
    let most = card.days.iter().map(|d| d.accepted + d.refused).max().unwrap_or(0);
    for day in &card.days {
        let (accepted, refused) = bars(day.accepted, day.refused, most);
        let bar = format!("{}{}", "#".repeat(accepted), "x".repeat(refused));
        let _ =
            writeln!(out, "  {} {bar:<width$} {}", day.date, day.accepted + day.refused, width = BAR_WIDTH as usize);
    }
    out
}

/// Characters for a day's accepted and refused submissions when `most` fills [`BAR_WIDTH`]: the
/// whole bar is rounded up, and a part that is not zero shows at least one character.
fn bars(accepted: i64, refused: i64, most: i64) -> (usize, usize) {
    if most == 0 {
        return (0, 0);
    }
    let total = ((accepted + refused) * BAR_WIDTH + most - 1) / most;
    let accepted_chars = match (accepted, refused) {
        (_, 0) => total,
        (0, _) => 0,
        _ => (accepted * BAR_WIDTH / most).clamp(1, (total - 1).max(1)),
    };
    let refused_chars = if refused == 0 { 0 } else { (total - accepted_chars).max(1) };
    (usize::try_from(accepted_chars).unwrap_or(0), usize::try_from(refused_chars).unwrap_or(0))
}

/// `45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h {:02} min", s / 3_600, s % 3_600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_day_and_show_any_count() {
        assert_eq!(bars(10, 0, 10), (40, 0));
        assert_eq!(bars(3, 1, 4), (30, 10));
        assert_eq!(bars(4, 2, 6), (26, 14));
        assert_eq!(bars(0, 1, 4), (0, 10));
        assert_eq!(bars(1, 1, 1000), (1, 1));
        assert_eq!(bars(0, 0, 10), (0, 0));
        assert_eq!(bars(0, 0, 0), (0, 0));
    }

    #[test]
    fn durations_read_in_the_largest_units() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(720), "12 min");
        assert_eq!(duration(3 * 3600 + 5 * 60), "3 h 05 min");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2 d 4 h");
    }
}
