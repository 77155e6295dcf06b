//! The few HTML pieces report.html is made of: escaping and a table element.

/// `text` with the five characters that can open markup or end an attribute
/// replaced, so sweep names, paths and cell values always show as text.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A captioned table in a wrapper that scrolls sideways, so a wide table never
/// widens the page on a phone. `file` names the output it shows (`data-file`,
/// which the tests count); header and cells are plain text, `caption` is HTML.
pub(crate) fn table(file: &str, caption_html: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table data-file=\"{}\">\n<caption>{caption_html}</caption>\n<thead><tr>",
        escape(file)
    );
    for cell in header {
        out.push_str(&format!("<th>{}</th>", escape(cell)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x & \"y\"')</script>"),
            "&lt;script&gt;alert(&#39;x &amp; &quot;y&quot;&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn table_cells_are_escaped() {
        let html = table("a.csv", "A", &["<b>".into()], &[vec!["x<y".into()]]);
        assert!(html.contains("<th>&lt;b&gt;</th>"));
        assert!(html.contains("<td>x&lt;y</td>"));
        assert!(html.contains("data-file=\"a.csv\""));
    }
}
