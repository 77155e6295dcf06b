//! The Markdown documents of the analysis (settings.md, best.md, ttest.md,
//! study.md) as HTML. They are written by `crate::tables` and the modules that
//! call it, so only that subset is understood: `#` headings, paragraphs, pipe
//! tables (cells escaped as `\|`) and `code` spans.

use super::html::{escape, table};

/// `markdown` (the text of `file`) as HTML. Each table is captioned with the
/// file and the heading it stands under, so every table says what it is.
pub(crate) fn to_html(file: &str, markdown: &str) -> String {
    let mut out = String::new();
    let mut heading = String::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for line in markdown.lines().chain([""]) {
        let trimmed = line.trim();
        if trimmed.starts_with('|') {
            flush_paragraph(&mut out, &mut paragraph);
            rows.push(cells(trimmed));
            continue;
        }
        flush_table(&mut out, &mut rows, file, &heading);
        if trimmed.is_empty() {
            flush_paragraph(&mut out, &mut paragraph);
        } else if let Some(text) = heading_text(trimmed) {
            flush_paragraph(&mut out, &mut paragraph);
            // The page's own headings are h1 and h2; a document's levels sit below them.
            let level = (trimmed.len() - trimmed.trim_start_matches('#').len() + 2).min(6);
            out.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            heading = text.to_string();
        } else {
            paragraph.push(trimmed);
        }
    }
    out
}

fn heading_text(line: &str) -> Option<&str> {
    let text = line.trim_start_matches('#');
    (text.len() < line.len() && text.starts_with(' ')).then(|| text.trim())
}

fn flush_paragraph(out: &mut String, paragraph: &mut Vec<&str>) {
    if !paragraph.is_empty() {
        out.push_str(&format!("<p>{}</p>\n", inline(&paragraph.join(" "))));
        paragraph.clear();
    }
}

/// The rows collected so far as one table: the first is the header, the
/// second the `---` separator.
fn flush_table(out: &mut String, rows: &mut Vec<Vec<String>>, file: &str, heading: &str) {
    if rows.is_empty() {
        return;
    }
    let header = rows.remove(0);
    let separator = |row: &Vec<String>| row.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'));
    if rows.first().is_some_and(separator) {
        rows.remove(0);
    }
    let body: Vec<Vec<String>> = std::mem::take(rows);
    let caption = format!("<code>{}</code> — {}", escape(file), inline(heading));
    out.push_str(&table(file, &caption, &header, &body));
}

/// The cells of `| a | b\|c |`: split at unescaped bars, `\|` back to `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cell.push('|');
            }
            '|' => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Escaped text with `code` spans; an unpaired backtick stays as it is.
fn inline(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return escape(text);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { format!("<code>{}</code>", escape(part)) } else { escape(part) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_paragraphs_tables_and_code() {
        let md = "# Title\n\nSome `x<y` text\nwrapped.\n\n## Part\n\n| a | b\\|c |\n| --- | --- |\n| 1 |  |\n";
        let html = to_html("t.md", md);
        assert!(html.contains("<h3>Title</h3>"), "{html}");
        assert!(html.contains("<p>Some <code>x&lt;y</code> text wrapped.</p>"), "{html}");
        assert!(html.contains("<h4>Part</h4>"), "{html}");
        assert!(html.contains("<caption><code>t.md</code> — Part</caption>"), "{html}");
        assert!(html.contains("<th>a</th><th>b|c</th>"), "{html}");
        assert!(html.contains("<tr><td>1</td><td></td></tr>"), "{html}");
        assert_eq!(html.matches("<table").count(), 1);
    }

    #[test]
    fn a_table_right_after_text_is_still_a_table() {
        let html = to_html("t.md", "text\n| a |\n| --- |\n| 1 |\nmore");
        assert_eq!(html.matches("<table").count(), 1, "{html}");
        assert!(html.contains("<p>more</p>"), "{html}");
    }
}
