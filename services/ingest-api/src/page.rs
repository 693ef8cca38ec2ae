//! The hosted respond page: server-rendered HTML, usable on a phone and with a keyboard, with
//! a little progressive JavaScript that reports the page shown, saves each answer as it is
//! given, and finishes the response.
//!
//! Every page is served under a strict Content-Security-Policy: its one style sheet and its one
//! script are inline and allowed by their SHA-256 hashes, so nothing injected into a page (a
//! survey title that escaped escaping) could run, and the page may not be framed.

use actix_web::HttpResponseBuilder;
use actix_web::http::StatusCode;
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use base64::Engine as _;
use beckon_domain::survey::{Question, QuestionKind};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// The policy every page is served with: only its own hashed style and script, requests only
/// to its own origin, never framed (`frame-ancestors`), no `<base>`, forms posting nowhere else.
pub fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            hash_source(SCRIPT),
            hash_source(STYLE)
        )
    })
}

/// A CSP hash source: `sha256-` and the base64 of the SHA-256 of the inline element's text.
fn hash_source(inline: &str) -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(inline.as_bytes()))
    )
}

/// The start of a page response: HTML, never cached (it shows a person's answers), under the
/// page's CSP, not sniffed as anything else, and leaking no magic link through `Referer`.
pub fn response(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponseBuilder::new(status);
    builder
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((CONTENT_SECURITY_POLICY, content_security_policy()))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((REFERRER_POLICY, "no-referrer"));
    builder
}

/// Escapes text for HTML content and attribute values.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
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

const STYLE: &str = r#"
:root { color-scheme: light dark; --accent: #4f46e5; --muted: #6b7280; --border: #d1d5db; --error: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 40rem; margin: 0 auto; padding: 1.5rem 1rem 4rem; }
h1 { font-size: 1.4rem; margin: 0 0 1.5rem; }
fieldset { border: 1px solid var(--border); border-radius: .75rem; margin: 0 0 1.25rem; padding: 1rem; }
legend { font-weight: 600; padding: 0 .25rem; }
.required legend::after { content: " *"; color: var(--error); }
.scale { display: flex; flex-wrap: wrap; gap: .4rem; }
.scale label { flex: 1 0 2.6rem; }
.scale input { position: absolute; opacity: 0; }
.scale span { display: block; text-align: center; padding: .6rem 0; border: 1px solid var(--border); border-radius: .5rem; cursor: pointer; }
.scale input:checked + span { background: var(--accent); color: #fff; border-color: var(--accent); }
.scale input:focus-visible + span { outline: 3px solid var(--accent); outline-offset: 2px; }
.ends { display: flex; justify-content: space-between; color: var(--muted); font-size: .85rem; margin-top: .3rem; }
.choice { display: flex; gap: .6rem; align-items: center; padding: .45rem 0; }
.choice input { width: 1.2rem; height: 1.2rem; }
textarea { width: 100%; min-height: 6rem; font: inherit; padding: .6rem; border: 1px solid var(--border); border-radius: .5rem; }
.error { color: var(--error); min-height: 1.2em; margin: .4rem 0 0; font-size: .9rem; }
button { font: inherit; font-weight: 600; width: 100%; padding: .85rem; border: 0; border-radius: .6rem; background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .6; }
button.quiet { background: none; color: var(--muted); font-weight: 400; margin-top: .4rem; }
.status { color: var(--muted); font-size: .9rem; min-height: 1.2em; }
.notice { text-align: center; padding-top: 3rem; }
.reference { color: var(--muted); font-size: .8rem; }
"#;

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// A page that says why the link cannot be answered (expired, withdrawn, unknown, done); an
/// error's page shows the request's id, for the respondent to quote.
pub fn notice(title: &str, message: &str, reference: Option<&str>) -> String {
    let reference = reference
        .map(|id| format!("<p class=\"reference\">Reference: {}</p>", escape(id)))
        .unwrap_or_default();
    shell(
        title,
        &format!(
            "<div class=\"notice\" role=\"status\"><h1>{}</h1><p>{}</p>{reference}</div>",
            escape(title),
            escape(message)
        ),
    )
}

fn scale(
    out: &mut String,
    q: &Question,
    from: i64,
    to: i64,
    answer: Option<&Value>,
    ends: (&str, &str),
) {
    let chosen = answer.and_then(Value::as_i64);
    out.push_str("<div class=\"scale\">");
    for n in from..=to {
        let _ = write!(
            out,
            "<label><input type=\"radio\" name=\"{id}\" value=\"{n}\"{checked}><span>{n}</span></label>",
            id = escape(&q.id),
            checked = if chosen == Some(n) { " checked" } else { "" },
        );
    }
    let _ = write!(
        out,
        "</div><div class=\"ends\" aria-hidden=\"true\"><span>{}</span><span>{}</span></div>",
        ends.0, ends.1
    );
}

fn choices(
    out: &mut String,
    q: &Question,
    options: &[String],
    multiple: bool,
    answer: Option<&Value>,
) {
    let chosen: Vec<&str> = match answer {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for (i, option) in options.iter().enumerate() {
        let _ = write!(
            out,
            "<label class=\"choice\" for=\"{id}-{i}\"><input id=\"{id}-{i}\" type=\"{kind}\" name=\"{id}\" value=\"{value}\"{checked}>{value}</label>",
            id = escape(&q.id),
            kind = if multiple { "checkbox" } else { "radio" },
            value = escape(option),
            checked = if chosen.contains(&option.as_str()) {
                " checked"
            } else {
                ""
            },
        );
    }
}

/// The survey to answer, with the answers given so far filled in (a person who left and comes
/// back resumes where they stopped).
pub fn survey(
    token: &str,
    name: &str,
    questions: &[Question],
    answers: &HashMap<String, Value>,
) -> String {
    // The token rides in an attribute, so the script stays the same text on every page and
    // its hash in the policy holds.
    let mut form = format!(
        "<h1>{}</h1><form id=\"survey\" data-token=\"{}\" novalidate>",
        escape(name),
        escape(token)
    );
    for q in questions {
        let answer = answers.get(&q.id);
        let kind = q.kind.name();
        let _ = write!(
            form,
            "<fieldset class=\"question{req}\" data-question=\"{id}\" data-type=\"{kind}\" aria-describedby=\"{id}-error\"><legend>{title}</legend>",
            req = if q.required { " required" } else { "" },
            id = escape(&q.id),
            title = escape(&q.title),
        );
        match &q.kind {
            QuestionKind::Nps => scale(&mut form, q, 0, 10, answer, ("Not likely", "Very likely")),
            QuestionKind::Rating => scale(&mut form, q, 1, 5, answer, ("Poor", "Excellent")),
            QuestionKind::Mcq { options } => choices(&mut form, q, options, false, answer),
            QuestionKind::Checkbox { options } => choices(&mut form, q, options, true, answer),
            QuestionKind::Text => {
                let _ = write!(
                    form,
                    "<textarea name=\"{id}\" aria-label=\"{title}\" maxlength=\"5000\">{text}</textarea>",
                    id = escape(&q.id),
                    title = escape(&q.title),
                    text = escape(answer.and_then(Value::as_str).unwrap_or("")),
                );
            }
        }
        let _ = write!(
            form,
            "<p class=\"error\" id=\"{}-error\" aria-live=\"polite\"></p></fieldset>",
            escape(&q.id)
        );
    }
    form.push_str("<p class=\"status\" id=\"status\" aria-live=\"polite\"></p><button type=\"submit\">Submit</button><button type=\"button\" class=\"quiet\" id=\"close\">Close survey</button></form>");
    form.push_str(&format!("<script>{SCRIPT}</script>"));
    shell(name, &form)
}

const SCRIPT: &str = r#"
(() => {
  const form = document.getElementById("survey");
  const base = "/surveys/" + form.dataset.token;
  const status = document.getElementById("status");
  const json = { "content-type": "application/json", "accept": "application/json" };
  // Where and in which language the survey is shown; a tag the server would refuse is left
  // out rather than lose the report.
  const shown = { channel: "hosted-page" };
  if (/^[A-Za-z0-9-]{1,35}$/.test(navigator.language || "")) { shown.locale = navigator.language; }
  fetch(base + "/display", { method: "POST", headers: json, body: JSON.stringify(shown) }).catch(() => {});
  const valueOf = (fs) => {
    const type = fs.dataset.type;
    if (type === "text") { return fs.querySelector("textarea").value; }
    if (type === "checkbox") { return [...fs.querySelectorAll("input:checked")].map((i) => i.value); }
    const picked = fs.querySelector("input:checked");
    if (!picked) { return null; }
    return type === "mcq" ? picked.value : Number(picked.value);
  };
  const showError = (fs, message) => { fs.querySelector(".error").textContent = message || ""; };
  // What the server holds, per question: an answer is sent only when it changed.
  const saved = new Map();
  for (const fs of form.querySelectorAll("fieldset")) { saved.set(fs, JSON.stringify(valueOf(fs))); }
  const save = async (fs, keepalive) => {
    const value = valueOf(fs);
    if (value === null || (Array.isArray(value) && value.length === 0) || value === "") { return true; }
    const key = JSON.stringify(value);
    if (saved.get(fs) === key) { return true; }
    const r = await fetch(base + "/answers/" + encodeURIComponent(fs.dataset.question), {
      method: "PUT", headers: json, body: JSON.stringify({ value }), keepalive });
    if (r.ok) { saved.set(fs, key); showError(fs, ""); status.textContent = "Saved"; return true; }
    const body = await r.json().catch(() => ({}));
    showError(fs, body.message || "Could not save this answer");
    return false;
  };
  // An answer settles before it is saved, so one answer is one save: text as it is typed,
  // boxes as they are ticked, and a scale or a choice stepped through with the arrow keys,
  // where every step is a change.
  const timers = new Map();
  const later = (fs) => {
    clearTimeout(timers.get(fs));
    timers.set(fs, setTimeout(() => { timers.delete(fs); save(fs); }, 600));
  };
  // Leaving with an answer still settling saves it on the way out.
  addEventListener("pagehide", () => {
    for (const [fs, timer] of timers) { clearTimeout(timer); save(fs, true); }
    timers.clear();
  });
  form.addEventListener("change", (e) => {
    const fs = e.target.closest("fieldset");
    if (fs && fs.dataset.type !== "text") { later(fs); }
  });
  form.addEventListener("input", (e) => {
    const fs = e.target.closest("fieldset");
    if (fs && fs.dataset.type === "text") { later(fs); }
  });
  const thanks = (title, text) => {
    document.querySelector("main").innerHTML =
      '<div class="notice" role="status"><h1>' + title + '</h1><p>' + text + '</p></div>';
  };
  // Closing keeps what was answered (saved first) and ends the response unsubmitted.
  document.getElementById("close").addEventListener("click", async () => {
    for (const fs of form.querySelectorAll("fieldset")) { clearTimeout(timers.get(fs)); await save(fs); }
    timers.clear();
    const r = await fetch(base + "/close", { method: "POST", headers: json });
    if (r.ok) { thanks("Survey closed", "Thank you for your time."); return; }
    const body = await r.json().catch(() => ({}));
    status.textContent = body.message || "Could not close the survey";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    for (const fs of form.querySelectorAll("fieldset")) { clearTimeout(timers.get(fs)); await save(fs); }
    const r = await fetch(base + "/complete", { method: "POST", headers: json });
    const body = await r.json().catch(() => ({}));
    if (r.ok) { thanks("Thank you!", "Your answers were recorded."); return; }
    for (const id of body.missing || []) {
      const fs = form.querySelector('fieldset[data-question="' + CSS.escape(id) + '"]');
      if (fs) { showError(fs, "Please answer this question"); }
    }
    const first = form.querySelector(".error:not(:empty)");
    if (first) { first.closest("fieldset").querySelector("input, textarea").focus(); }
    status.textContent = body.message || "Please check your answers";
    button.disabled = false;
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere_it_is_shown() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let q = Question {
            id: "q".into(),
            title: "<script>alert(1)</script>".into(),
            required: true,
            tags: Vec::new(),
            kind: QuestionKind::Mcq {
                options: vec!["<b>".into()],
            },
        };
        let html = survey("tok", "<i>name</i>", &[q], &HashMap::new());
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;i&gt;name&lt;/i&gt;"));
    }

    #[test]
    fn the_policy_allows_exactly_the_style_and_script_a_page_carries() {
        let inline = |html: &str, tag: &str| {
            let open = format!("<{tag}>");
            let start = html.find(&open).map(|i| i + open.len()).unwrap();
            let end = html[start..].find(&format!("</{tag}>")).unwrap() + start;
            hash_source(&html[start..end])
        };
        let policy = content_security_policy();
        for html in [
            survey("tok-1", "S", &[], &HashMap::new()),
            survey("another-token", "S", &[], &HashMap::new()),
        ] {
            assert!(policy.contains(&format!("script-src '{}'", inline(&html, "script"))));
            assert!(policy.contains(&format!("style-src '{}'", inline(&html, "style"))));
        }
        let notice = notice("Closed", "Gone.", Some("req_<b>"));
        assert!(policy.contains(&format!("style-src '{}'", inline(&notice, "style"))));
        assert!(notice.contains("Reference: req_&lt;b&gt;"), "{notice}");
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
    }

    #[test]
    fn saved_answers_are_filled_in() {
        let questions = vec![
            Question {
                id: "n".into(),
                title: "N".into(),
                required: true,
                tags: Vec::new(),
                kind: QuestionKind::Nps,
            },
            Question {
                id: "t".into(),
                title: "T".into(),
                required: false,
                tags: Vec::new(),
                kind: QuestionKind::Text,
            },
        ];
        let answers = HashMap::from([
            ("n".to_owned(), Value::from(9)),
            ("t".to_owned(), Value::from("so far")),
        ]);
        let html = survey("tok", "S", &questions, &answers);
        assert!(html.contains("value=\"9\" checked"));
        assert!(html.contains(">so far</textarea>"));
    }
}
