//! The project page's search form (search, type, status, sort) and its page links. A plain GET
//! form: the URL holds the search (`?q&type&status&sort&cursor`, the names of the REST API's
//! parameters), so it works before hydration, can be bookmarked and goes back with the browser.

use crate::components::ui;
use crate::paths;
use leptos::prelude::*;
use pergola_domain::{StageQueryParams, StageSort, StageStatus, StageType};

#[component]
pub fn StageSearch(project: String, params: StageQueryParams) -> impl IntoView {
    let chosen = |v: &Option<String>| v.clone().unwrap_or_default();
    let (q, stage_type, status, sort) =
        (chosen(&params.q), chosen(&params.stage_type), chosen(&params.status), chosen(&params.sort));
    let types = StageType::ALL.map(|t| (t.as_str(), t.label()));
    let statuses = [StageStatus::Running, StageStatus::Suspending, StageStatus::Suspended]
        .map(|s| (s.as_str(), capitalized(s.as_str())));
    let option = move |value: &'static str, label: String, current: &str| {
        view! { <option value=value selected=value == current>{label}</option> }
    };
    let filtered = !params.is_empty();
    view! {
        <form method="get" role="search" aria-label="Find stages" class="mt-4 flex flex-wrap items-end gap-3">
            <div class="min-w-48 flex-1">
                <label for="stage-search" class=ui::LABEL>"Search"</label>
                <input
                    id="stage-search"
                    type="search"
                    name="q"
                    value=q
                    maxlength=pergola_domain::listing::MAX_SEARCH_CHARS
                    placeholder="Name or Stage ID"
                    class=ui::INPUT
                />
            </div>
            <div>
                <label for="stage-type-filter" class=ui::LABEL>"Type"</label>
                <select id="stage-type-filter" name="type" class=ui::INPUT>
                    <option value="">"All types"</option>
                    {types.into_iter().map(|(v, l)| option(v, l.to_owned(), &stage_type)).collect_view()}
                </select>
            </div>
            <div>
                <label for="stage-status-filter" class=ui::LABEL>"Status"</label>
                <select id="stage-status-filter" name="status" class=ui::INPUT>
                    <option value="">"All statuses"</option>
                    {statuses.into_iter().map(|(v, l)| option(v, l, &status)).collect_view()}
                </select>
            </div>
            <div>
                <label for="stage-sort" class=ui::LABEL>"Sort"</label>
                <select id="stage-sort" name="sort" class=ui::INPUT>
                    {StageSort::ALL
                        .into_iter()
                        .map(|o| option(o.as_str(), o.label().to_owned(), if sort.is_empty() { "created" } else { &sort }))
                        .collect_view()}
                </select>
            </div>
            <button type="submit" class=ui::PRIMARY>"Apply"</button>
            {filtered.then(|| view! { <a href=paths::project(&project) class=ui::SECONDARY>"Clear"</a> })}
        </form>
    }
}

/// "Showing 1–48 of 200 stages", "3 of 200 stages match", … and the links to the first and
/// the next page.
#[component]
pub fn StagePages(
    project: String,
    params: StageQueryParams,
    shown: usize,
    matching: u64,
    total: u64,
    next: Option<String>,
) -> impl IntoView {
    let on_later_page = params.cursor.as_deref().is_some_and(|c| !c.is_empty());
    let filtered = !StageQueryParams { sort: None, cursor: None, ..params.clone() }.is_empty();
    let stages = |n: u64| if n == 1 { "1 stage".to_owned() } else { format!("{n} stages") };
    let summary = if filtered {
        format!("{matching} of {} {}.", stages(total), if matching == 1 { "matches" } else { "match" })
    } else if on_later_page || next.is_some() {
        format!("{} of {} shown on this page.", shown, stages(total))
    } else {
        format!("{}.", capitalized(&stages(total)))
    };
    let first = on_later_page.then(|| {
        let href = match params.query_string() {
            q if q.is_empty() => paths::project(&project),
            q => format!("{}?{q}", paths::project(&project)),
        };
        view! { <a href=href class=ui::SECONDARY>"First page"</a> }
    });
    let next = next.map(|cursor| {
        let href = format!("{}?{}", paths::project(&project), params.with_cursor(&cursor));
        view! { <a href=href rel="next" class=ui::SECONDARY>"Next page"</a> }
    });
    let links = (first.is_some() || next.is_some()).then(|| {
        view! { <nav aria-label="Stage pages" class="mt-4 flex gap-3">{first}{next}</nav> }
    });
    view! {
        <p class="mt-3 text-sm text-slate-600" data-testid="stage-count">{summary}</p>
        {links}
    }
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
