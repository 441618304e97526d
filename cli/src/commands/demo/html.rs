//! The demo's HTML report: both runs side by side, each the probe's own self-contained report
//! (in an `iframe` `srcdoc`, so their styles and scripts stay apart), under a short verdict.

use deskew_probe::Report;

/// Escapes text for an HTML attribute or element.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn column(title: &str, r: &Report) -> String {
    format!(
        "<section><h2>{}</h2><p class=\"{}\">{} page loads, {} failed ({:.1}% successful)</p><iframe title=\"{}\" srcdoc=\"{}\"></iframe></section>",
        escape(title),
        if r.loads.failed == 0 { "ok" } else { "bad" },
        r.loads.total,
        r.loads.failed,
        r.loads.success_percent,
        escape(title),
        escape(&r.to_html())
    )
}

/// The whole page.
pub fn page(before: &Report, after: &Report) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>deskew demo</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1rem}}main{{display:flex;gap:1rem}}section{{flex:1}}\
         iframe{{width:100%;height:80vh;border:1px solid #ccc}}.ok{{color:#070}}.bad{{color:#b00}}</style></head>\
         <body><h1>deskew demo: a rolling update from v1 to v2</h1>\
         <p>Three pods behind a round-robin balancer, maxSurge 1, maxUnavailable 0, probed for the whole rollout.</p>\
         <main>{}{}</main></body></html>\n",
        column("Without deskew: each pod serves its own image", before),
        column("With deskew: pods serve /assets/ from the shared store", after)
    )
}
