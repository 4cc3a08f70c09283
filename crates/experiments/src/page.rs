//! One `index.html` per run: the run's report (its tables, the report's figures beside ours,
//! configuration, device, seed and timings, from the Markdown the run writes), then every
//! chart of the output folder and each saved model's Keras summary. Self-contained: images
//! are linked relatively (each PNG links to its SVG), no script or style from elsewhere, so
//! the folder can be moved, zipped or opened offline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::output::Output;

/// HTML-escapes text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `code` spans and **bold** inside a line of escaped text.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut code = false;
    for (i, part) in escape(text).split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        }
        out.push_str(part);
    }
    if code {
        out.push_str("</code>");
    }
    let mut bold = String::new();
    for (i, part) in out.split("**").enumerate() {
        if i > 0 {
            bold.push_str(if i % 2 == 1 { "<b>" } else { "</b>" });
        }
        bold.push_str(part);
    }
    bold
}

fn cells(line: &str) -> Vec<&str> {
    let line = line.trim().trim_start_matches('|').trim_end_matches('|');
    line.split('|').map(str::trim).collect()
}

/// The Markdown the runs write (headings, paragraphs, pipe tables, fenced code, lists) as
/// HTML.
pub fn markdown_to_html(markdown: &str) -> String {
    let mut html = String::new();
    let mut lines = markdown.lines().peekable();
    let mut paragraph: Vec<String> = Vec::new();
    let flush = |html: &mut String, paragraph: &mut Vec<String>| {
        if !paragraph.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", paragraph.join(" "));
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            flush(&mut html, &mut paragraph);
            html.push_str("<pre>");
            for code in lines.by_ref() {
                if code.trim().starts_with("```") {
                    break;
                }
                let _ = writeln!(html, "{}", escape(code));
            }
            html.push_str("</pre>\n");
        } else if trimmed.starts_with('|') {
            flush(&mut html, &mut paragraph);
            html.push_str("<table>\n");
            let header = cells(trimmed);
            let _ = writeln!(
                html,
                "<tr>{}</tr>",
                header
                    .iter()
                    .map(|c| format!("<th>{}</th>", inline(c)))
                    .collect::<String>()
            );
            while let Some(row) = lines
                .peek()
                .map(|l| l.trim())
                .filter(|l| l.starts_with('|'))
            {
                lines.next();
                if row.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')) {
                    continue;
                }
                let _ = writeln!(
                    html,
                    "<tr>{}</tr>",
                    cells(row)
                        .iter()
                        .map(|c| format!("<td>{}</td>", inline(c)))
                        .collect::<String>()
                );
            }
            html.push_str("</table>\n");
        } else if let Some(heading) = trimmed.strip_prefix('#') {
            flush(&mut html, &mut paragraph);
            let level = 1 + heading.chars().take_while(|&c| c == '#').count();
            let text = heading.trim_start_matches('#').trim();
            let _ = writeln!(html, "<h{level}>{}</h{level}>", inline(text));
        } else if let Some(item) = trimmed.strip_prefix("- ") {
            flush(&mut html, &mut paragraph);
            let _ = writeln!(html, "<ul><li>{}</li></ul>", inline(item));
        } else if trimmed.is_empty() {
            flush(&mut html, &mut paragraph);
        } else {
            paragraph.push(inline(trimmed));
        }
    }
    flush(&mut html, &mut paragraph);
    html
}

/// Every `.png` under `dir` (its own first, then each sub-folder's), relative to `dir`.
fn charts_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        let (folders, files): (Vec<PathBuf>, Vec<PathBuf>) =
            entries.into_iter().partition(|p| p.is_dir());
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "png"))
        {
            if let Ok(relative) = file.strip_prefix(root) {
                out.push(relative.to_path_buf());
            }
        }
        for folder in folders.iter().filter(|f| !f.ends_with("checkpoints")) {
            walk(root, folder, out);
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// The Keras summary of the model saved in `dir` (a `model.json`), if any.
fn model_summary(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(trainer::estimator::CARD_FILE)).ok()?;
    let card: trainer::ModelCard = serde_json::from_str(&text).ok()?;
    card.spec.summary().ok()
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;\
padding:3px 8px;text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:13px}figure{margin:1.2em 0}\
figcaption{font-size:13px;color:#555}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}";

/// Marks the page once loaded with how many images it has and which failed to load
/// (`data-images`, `data-broken` on the body), for the headless-browser test and for anyone
/// checking a copied folder.
const CHECK: &str = "<script>window.addEventListener('load',function(){var i=[].slice.call(\
document.images);document.body.setAttribute('data-images',i.length);document.body.\
setAttribute('data-broken',i.filter(function(m){return !(m.complete&&m.naturalWidth>0)}).\
map(function(m){return m.getAttribute('src')}).join(' '))});</script>\n";

/// Writes `index.html` into `out`: `title`, the run's Markdown `report`, then every chart
/// of the folder grouped by sub-folder with each saved model's summary.
pub fn write_index(out: &Output, title: &str, report: &str) -> Result<(), crate::Error> {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    );
    html.push_str(&markdown_to_html(report));
    let charts = charts_under(&out.dir);
    let mut folder: Option<PathBuf> = None;
    for chart in &charts {
        let parent = chart.parent().map(Path::to_path_buf).unwrap_or_default();
        if folder.as_ref() != Some(&parent) {
            let name = if parent.as_os_str().is_empty() {
                "Charts".to_string()
            } else {
                parent.display().to_string()
            };
            let _ = writeln!(html, "<h2>{}</h2>", escape(&name));
            if let Some(summary) = model_summary(&out.dir.join(&parent)) {
                let _ = writeln!(html, "<pre>{}</pre>", escape(&summary));
            }
            folder = Some(parent);
        }
        let png = chart.display().to_string();
        let svg = chart.with_extension("svg").display().to_string();
        let _ = writeln!(
            html,
            "<figure><a href=\"{}\"><img src=\"{}\" alt=\"{}\"></a>\
             <figcaption>{}</figcaption></figure>",
            escape(&svg),
            escape(&png),
            escape(&png),
            escape(&png)
        );
    }
    html.push_str(CHECK);
    html.push_str("</body></html>\n");
    out.write("index.html", &html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_html() {
        let html = markdown_to_html(
            "# Title\n\nSome `code` and **bold**\ntext.\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n```\nx < y\n```\n- item\n",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(
            html.contains("<p>Some <code>code</code> and <b>bold</b> text.</p>"),
            "{html}"
        );
        assert!(html.contains("<tr><th>a</th><th>b</th></tr>"), "{html}");
        assert!(
            html.contains("<td>&lt;2&gt;</td>") && !html.contains("---"),
            "{html}"
        );
        assert!(html.contains("<pre>x &lt; y\n</pre>"), "{html}");
        assert!(html.contains("<li>item</li>"), "{html}");
    }

    #[test]
    fn the_index_links_every_chart_relatively() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::create(dir.path()).unwrap();
        std::fs::write(out.path("a.png"), b"png").unwrap();
        let model = out.subdir("models").unwrap().subdir("m").unwrap();
        std::fs::write(model.path("curves.png"), b"png").unwrap();
        write_index(&out, "run <1>", "# Run\n").unwrap();
        let html = std::fs::read_to_string(out.path("index.html")).unwrap();
        assert!(html.contains("<title>run &lt;1&gt;</title>"));
        assert!(
            html.contains("src=\"a.png\"") && html.contains("href=\"a.svg\""),
            "{html}"
        );
        assert!(html.contains("src=\"models/m/curves.png\""), "{html}");
        assert!(html.contains("<h2>models/m</h2>"), "{html}");
    }
}
