//! `report --html FILE`: the coverage report as one self-contained HTML page
//! for people. No script, no network (a Content-Security-Policy forbids
//! every fetch), pictures as inline SVG, colours backed by symbols and words
//! so the page reads in black and white.
//!
//! Every text that comes from the store (keys, details, trail names — what
//! a member account chose) goes through [`escape`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use chrono::NaiveDate;
use trailvault_pipeline::jobs::report::{Cell, CellStatus, CoverageReport};
use trailvault_pipeline::model::findings::Finding;
use trailvault_pipeline::model::time::utc_text;

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline have no business
            // in a page (and NUL is not allowed).
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a1a1a; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 2px 4px; vertical-align: top; }
th { background: #eee; text-align: left; }
table.grid td { text-align: center; min-width: 2.2em; font-size: 12px; white-space: nowrap; }
table.grid th.day { writing-mode: vertical-rl; font-weight: normal; font-size: 11px; }
td.findings { background: #f4b6b6; } td.collected { background: #cfe0f7; }
td.validated { background: #bfe5bf; } td.none { background: #fff; color: #999; }
.legend span { display: inline-block; border: 1px solid #bbb; padding: 0 6px; margin-right: 8px; }
.legend .findings { background: #f4b6b6; } .legend .collected { background: #cfe0f7; }
.legend .validated { background: #bfe5bf; }
td.mono, code { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.critical { color: #a00000; font-weight: bold; } .warning { color: #8a5a00; font-weight: bold; }
.summary td { padding: 2px 10px; }
"#;

/// The symbol and word of a cell status (the colour only repeats them).
fn mark(status: Option<CellStatus>) -> (&'static str, &'static str) {
    match status {
        Some(CellStatus::Findings) => ("\u{2716}", "findings"),
        Some(CellStatus::Collected) => ("\u{25D0}", "collected"),
        Some(CellStatus::Validated) => ("\u{2714}", "validated"),
        None => ("\u{00B7}", "none"),
    }
}

fn cell_title(cell: &Cell) -> String {
    let c = &cell.counts;
    let mut title = format!(
        "{} {} {}: {} log files, {} digests collected; {} digests and {} log files validated; {} open findings ({} gaps)",
        cell.account_id,
        cell.region,
        cell.day,
        c.log_files,
        c.digests,
        c.digests_validated,
        c.log_files_validated,
        c.findings,
        c.gaps
    );
    for (kind, count) in &c.kinds {
        let _ = write!(title, "; {kind}: {count}");
    }
    title
}

fn grid(out: &mut String, report: &CoverageReport) {
    let days = report.days();
    let mut rows: BTreeMap<(&str, &str), BTreeMap<NaiveDate, &Cell>> = BTreeMap::new();
    for cell in &report.cells {
        rows.entry((cell.account_id.as_str(), cell.region.as_str()))
            .or_default()
            .insert(cell.day, cell);
    }
    out.push_str("<h2 id=\"grid\">Coverage by account, Region and day</h2>\n");
    out.push_str(
        "<p class=\"legend\">Each cell: <span class=\"validated\">\u{2714} validated</span>\
         every archived digest of the day validated \
         <span class=\"collected\">\u{25D0} collected</span>files archived, not every digest validated (yet) \
         <span class=\"findings\">\u{2716} N findings</span>N open findings about files of the day \
         (gaps: history missing) <span>\u{00B7} none</span>nothing archived. \
         The numbers: files archived / digests validated.</p>\n",
    );
    if rows.is_empty() {
        out.push_str("<p>Nothing archived in these days.</p>\n");
        return;
    }
    out.push_str("<table class=\"grid\">\n<thead><tr><th>Account</th><th>Region</th>");
    for day in &days {
        let _ = write!(
            out,
            "<th class=\"day\" scope=\"col\">{}</th>",
            day.format("%Y-%m-%d")
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for ((account, region), cells) in &rows {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><th>{}</th>",
            escape(account),
            escape(region)
        );
        for day in &days {
            let cell = cells.get(day);
            let status = cell.map(|c| c.status);
            let (symbol, word) = mark(status);
            let _ = write!(
                out,
                "<td class=\"{word}\" data-account=\"{}\" data-region=\"{}\" data-day=\"{day}\" data-status=\"{word}\"",
                escape(account),
                escape(region),
            );
            match cell {
                Some(cell) => {
                    let c = &cell.counts;
                    let _ = write!(out, " title=\"{}\">{symbol} ", escape(&cell_title(cell)));
                    if cell.status == CellStatus::Findings {
                        let _ = write!(out, "{} findings", c.findings);
                        if c.gaps > 0 {
                            let _ = write!(out, " ({} gaps)", c.gaps);
                        }
                    } else {
                        let _ = write!(out, "{}/{}", c.log_files + c.digests, c.digests_validated);
                    }
                    out.push_str("</td>");
                }
                None => {
                    let _ = write!(out, " title=\"nothing archived\">{symbol}</td>");
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// Horizontal bars, one per labelled value, scaled to the largest.
fn bar_chart(out: &mut String, title: &str, unit: &str, bars: &[(String, f64, &str)]) {
    const ROW: usize = 18;
    const LABEL: usize = 420;
    const WIDTH: usize = 300;
    let height = ROW * bars.len() + 24;
    let max = bars.iter().map(|(_, v, _)| *v).fold(0.0_f64, f64::max);
    let _ = writeln!(
        out,
        "<svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        LABEL + WIDTH + 120,
        escape(title)
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    for (index, (label, value, colour)) in bars.iter().enumerate() {
        let y = index * ROW + 4;
        let width = if max > 0.0 {
            (value / max * WIDTH as f64).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\" font-family=\"monospace\">{}</text>\
             <rect x=\"{}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"{colour}\"><title>{}: {value:.0} {unit}</title></rect>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{value:.0} {unit}</text>",
            LABEL - 6,
            y + 12,
            escape(label),
            LABEL,
            ROW - 4,
            escape(label),
            LABEL as f64 + width + 4.0,
            y + 12,
        );
    }
    out.push_str("</svg>\n");
}

fn chains(out: &mut String, report: &CoverageReport) {
    out.push_str("<h2 id=\"chains\">Digest chains: heads and their age</h2>\n");
    if report.chains.is_empty() {
        out.push_str("<p>No digest chain validated yet.</p>\n");
        return;
    }
    out.push_str(
        "<table><thead><tr><th>Account</th><th>Region</th><th>Trail</th><th>Head (newest validated digest)</th>\
         <th>Head ends</th><th>Age</th><th>Head valid</th><th>Not validated yet</th></tr></thead><tbody>\n",
    );
    let mut bars = Vec::new();
    for chain in &report.chains {
        let age_hours = chain.age_seconds.map(|s| s as f64 / 3600.0);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(chain.account_id.as_deref().unwrap_or("?")),
            escape(chain.region.as_deref().unwrap_or("?")),
            escape(chain.trail.as_deref().unwrap_or("?")),
            if chain.backfill { " (backfill)" } else { "" },
            escape(chain.head_key.as_deref().unwrap_or("none yet")),
            chain.head_end.map(utc_text).unwrap_or_else(|| "-".into()),
            age_hours.map(|h| format!("{h:.1} h")).unwrap_or_else(|| "-".into()),
            match chain.head_valid {
                Some(true) => "\u{2714} yes",
                Some(false) => "\u{2716} no",
                None => "-",
            },
            chain
                .validation_lag_seconds
                .map(|s| format!("{:.1} h", s as f64 / 3600.0))
                .unwrap_or_else(|| "-".into()),
        );
        if let Some(hours) = age_hours {
            let label = format!(
                "{} {} {}",
                chain.account_id.as_deref().unwrap_or("?"),
                chain.region.as_deref().unwrap_or("?"),
                chain.trail.as_deref().unwrap_or("?")
            );
            let colour = if chain.head_valid == Some(false) {
                "#c03030"
            } else {
                "#4a7fc0"
            };
            bars.push((label, hours.max(0.0), colour));
        }
    }
    out.push_str("</tbody></table>\n");
    if !bars.is_empty() {
        out.push_str(
            "<p>Age of each chain head (hours since its newest validated digest ends):</p>\n",
        );
        bar_chart(out, "Age of each chain head", "h", &bars);
    }
}

fn evidence_link(bucket: &str, key: &str) -> String {
    let uri = format!("s3://{bucket}/{key}");
    format!("<a href=\"{0}\">{0}</a>", escape(&uri))
}

fn findings(out: &mut String, report: &CoverageReport) {
    let f = &report.findings;
    let _ = writeln!(
        out,
        "<h2 id=\"findings\">Open findings: {} ({} critical)</h2>",
        f.open, f.critical
    );
    if f.listed.is_empty() {
        out.push_str("<p>No open finding.</p>\n");
        return;
    }
    if f.outside_grid > 0 {
        let _ = writeln!(
            out,
            "<p>{} of them are about no file of the grid's days (older files, or the archive itself).</p>",
            f.outside_grid
        );
    }
    out.push_str(
        "<table><thead><tr><th>Severity</th><th>Kind</th><th>Account</th><th>Source object</th>\
         <th>Evidence in the archive</th><th>Detail</th><th>First seen</th></tr></thead><tbody>\n",
    );
    for finding in &f.listed {
        finding_row(out, report, finding);
    }
    out.push_str("</tbody></table>\n");
    if f.not_listed > 0 {
        let _ = writeln!(
            out,
            "<p>{} more not listed: <code>trailvault findings</code> lists them all.</p>",
            f.not_listed
        );
    }
}

fn finding_row(out: &mut String, report: &CoverageReport, finding: &Finding) {
    let severity = match finding.severity {
        trailvault_pipeline::model::findings::Severity::Critical => "critical",
        trailvault_pipeline::model::findings::Severity::Warning => "warning",
    };
    let source = if finding.key.is_empty() {
        escape(&format!("s3://{}", finding.bucket))
    } else {
        evidence_link(&finding.bucket, &finding.key)
    };
    let archived = finding
        .archive_key
        .as_deref()
        .map(|key| evidence_link(&report.archive_bucket, key))
        .unwrap_or_else(|| "-".to_string());
    let _ = writeln!(
        out,
        "<tr data-kind=\"{kind}\"><td class=\"{severity}\">{}{severity}</td><td>{kind}</td><td>{}</td>\
         <td class=\"mono\">{source}</td><td class=\"mono\">{archived}</td><td>{}</td><td>{}</td></tr>",
        if severity == "critical" { "\u{2716} " } else { "\u{26A0} " },
        escape(&finding.account_id),
        escape(&finding.detail),
        utc_text(finding.first_seen),
        kind = finding.kind.as_str(),
    );
}

fn runs(out: &mut String, report: &CoverageReport) {
    out.push_str("<h2 id=\"runs\">Run history</h2>\n");
    if report.runs.is_empty() {
        out.push_str("<p>No run recorded yet.</p>\n");
        return;
    }
    let mut bars = Vec::new();
    out.push_str(
        "<table><thead><tr><th>Started</th><th>Command</th><th>Took</th><th>Copied</th><th>Digests validated</th>\
         <th>Errors</th><th>Findings</th><th>Exit</th></tr></thead><tbody>\n",
    );
    for run in &report.runs {
        let took = (run.finished_at - run.started_at).num_milliseconds() as f64 / 1000.0;
        let outcome = match run.exit_code {
            0 => "\u{2714} clean",
            3 => "\u{2716} findings",
            _ => "\u{26A0} errors",
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{took:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {outcome}{}</td></tr>",
            utc_text(run.started_at),
            escape(&run.command),
            run.stats.objects_copied,
            run.stats.digests_validated,
            run.errors,
            run.findings,
            run.exit_code,
            if run.interrupted { " (interrupted)" } else { "" },
        );
        let colour = match run.exit_code {
            0 => "#3c9a3c",
            3 => "#c03030",
            _ => "#c08a20",
        };
        bars.push((
            format!("{} {}", utc_text(run.started_at), run.command),
            run.stats.objects_copied as f64,
            colour,
        ));
    }
    out.push_str("</tbody></table>\n");
    // Oldest first, as time goes.
    bars.reverse();
    out.push_str(
        "<p>Files copied per run (green: clean, red: findings, amber: operational errors):</p>\n",
    );
    bar_chart(out, "Files copied per run", "files", &bars);
}

fn accounts(out: &mut String, report: &CoverageReport) {
    out.push_str("<h2 id=\"lag\">Member accounts: newest archived file</h2>\n");
    out.push_str("<table><thead><tr><th>Account</th><th>Newest file (time in its name)</th><th>Lag</th></tr></thead><tbody>\n");
    for account in &report.accounts {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&account.account_id),
            account
                .newest_file_time
                .map(utc_text)
                .unwrap_or_else(|| "nothing archived".into()),
            account
                .lag_seconds
                .map(|s| format!("{:.1} h", s as f64 / 3600.0))
                .unwrap_or_else(|| "-".into()),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn summary(out: &mut String, report: &CoverageReport) {
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut accounts = BTreeSet::new();
    for cell in &report.cells {
        *by_status.entry(cell.status.as_str()).or_default() += 1;
        accounts.insert(cell.account_id.as_str());
    }
    let _ = writeln!(
        out,
        "<table class=\"summary\"><tr><td>Days</td><td>{} to {}</td></tr>\
         <tr><td>Accounts with files</td><td>{}</td></tr>\
         <tr><td>Account-Region-days</td><td>\u{2714} {} validated, \u{25D0} {} collected, \u{2716} {} with findings</td></tr>\
         <tr><td>Open findings</td><td>{} ({} critical)</td></tr>\
         <tr><td>Archive</td><td class=\"mono\">s3://{}</td></tr></table>",
        report.first_day,
        report.last_day,
        accounts.len(),
        by_status.get("validated").copied().unwrap_or(0),
        by_status.get("collected").copied().unwrap_or(0),
        by_status.get("findings").copied().unwrap_or(0),
        report.findings.open,
        report.findings.critical,
        escape(&report.archive_bucket),
    );
}

/// The whole page.
pub fn render(report: &CoverageReport) -> String {
    let mut out = String::with_capacity(64 * 1024 + report.cells.len() * 200);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // Nothing is fetched: no script, no image, no font, no style sheet.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    let _ = writeln!(
        out,
        "<title>trailvault coverage report {}</title>",
        utc_text(report.generated_at)
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(
        out,
        "<h1>trailvault coverage report</h1>\n<p>Generated {} from the progress store. \
         <a href=\"#grid\">Grid</a> \u{00B7} <a href=\"#findings\">Findings</a> \u{00B7} \
         <a href=\"#chains\">Chains</a> \u{00B7} <a href=\"#lag\">Accounts</a> \u{00B7} <a href=\"#runs\">Runs</a></p>",
        utc_text(report.generated_at)
    );
    summary(&mut out, report);
    grid(&mut out, report);
    findings(&mut out, report);
    chains(&mut out, report);
    accounts(&mut out, report);
    runs(&mut out, report);
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use trailvault_pipeline::jobs::report::{CellCounts, OpenFindings};
    use trailvault_pipeline::model::findings::FindingKind;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn report_with(finding: Finding, cells: Vec<Cell>) -> CoverageReport {
        CoverageReport {
            v: 1,
            generated_at: at("2026-01-03T12:00:00Z"),
            archive_bucket: "archive-bucket".into(),
            first_day: day("2026-01-01"),
            last_day: day("2026-01-03"),
            cells,
            accounts: Vec::new(),
            chains: Vec::new(),
            findings: OpenFindings {
                open: 1,
                critical: 1,
                outside_grid: 0,
                listed: vec![finding],
                not_listed: 0,
            },
            runs: Vec::new(),
        }
    }

    #[test]
    fn attacker_text_is_escaped_everywhere() {
        let evil = "<script>alert(1)</script>\"'&";
        let finding = Finding::new(
            FindingKind::DigestSignatureInvalid,
            "222222222201",
            "trail-bucket",
            &format!("AWSLogs/x/{evil}.json.gz"),
            format!("detail {evil}\u{0}"),
        )
        .with_archive_key(Some(&format!("arch/{evil}")));
        let cell = Cell {
            account_id: "222222222201".into(),
            region: format!("us-{evil}"),
            day: day("2026-01-02"),
            status: CellStatus::Findings,
            counts: CellCounts {
                findings: 1,
                kinds: [(evil.to_string(), 1)].into(),
                ..CellCounts::default()
            },
        };
        let html = render(&report_with(finding, vec![cell]));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(1)</"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(!html.contains('\u{0}'));
        assert!(
            html.contains("s3://archive-bucket/arch/&lt;script&gt;"),
            "evidence link: {html}"
        );
    }

    #[test]
    fn the_grid_has_one_cell_per_day_with_symbol_word_and_colour() {
        let finding = Finding::new(
            FindingKind::DigestMissing,
            "222222222201",
            "b",
            "k",
            "gone".into(),
        );
        let cells = vec![
            Cell {
                account_id: "222222222201".into(),
                region: "us-east-1".into(),
                day: day("2026-01-01"),
                status: CellStatus::Validated,
                counts: CellCounts {
                    log_files: 4,
                    digests: 2,
                    digests_validated: 2,
                    ..CellCounts::default()
                },
            },
            Cell {
                account_id: "222222222201".into(),
                region: "us-east-1".into(),
                day: day("2026-01-02"),
                status: CellStatus::Findings,
                counts: CellCounts {
                    findings: 2,
                    gaps: 1,
                    ..CellCounts::default()
                },
            },
        ];
        let html = render(&report_with(finding, cells));
        let row_cells = html.matches("<td class=\"").count();
        assert!(row_cells >= 3, "{html}");
        assert!(html.contains(
            "<td class=\"validated\" data-account=\"222222222201\" data-region=\"us-east-1\" data-day=\"2026-01-01\" data-status=\"validated\""
        ));
        assert!(html.contains("data-day=\"2026-01-02\" data-status=\"findings\""));
        assert!(html.contains("\u{2716} 2 findings (1 gaps)"));
        assert!(html.contains("data-day=\"2026-01-03\" data-status=\"none\""));
        assert!(html.contains("\u{2714} 6/2"));
        assert!(!html.contains("<script"), "no script at all");
        assert!(html.contains("Content-Security-Policy"));
        assert!(html.contains("<svg") || html.contains("No run recorded"));
    }

    #[test]
    fn escape_covers_the_html_specials() {
        assert_eq!(escape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
        assert_eq!(escape("tab\tnl\nbell\u{7}"), "tab\tnl\nbell\u{fffd}");
    }
}
