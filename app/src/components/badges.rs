//! A stage's type and status as badges (stage cards, stage page, settings, archived list).

use leptos::prelude::*;
use pergola_domain::{StageStatus, StageType};

/// DEV / QA / PROD, coloured by type.
#[component]
pub fn TypeBadge(stage_type: StageType) -> impl IntoView {
    let colour = match stage_type {
        StageType::Dev => "bg-sky-100 text-sky-800 ring-sky-300",
        StageType::Qa => "bg-amber-100 text-amber-800 ring-amber-300",
        StageType::Prod => "bg-rose-100 text-rose-800 ring-rose-300",
    };
    view! {
        <span
            class=format!("rounded px-2 py-0.5 text-xs font-bold tracking-wide ring-1 {colour}")
            title="Stage type"
        >
            {stage_type.label()}
        </span>
    }
}

/// running / suspending / suspended, with a dot.
#[component]
pub fn StatusBadge(status: StageStatus) -> impl IntoView {
    let (dot, text) = match status {
        StageStatus::Running => ("bg-emerald-500", "text-emerald-800"),
        StageStatus::Suspending => ("bg-amber-500 animate-pulse", "text-amber-800"),
        StageStatus::Suspended => ("bg-slate-400", "text-slate-600"),
    };
    view! {
        <span class=format!("inline-flex items-center gap-1.5 text-sm font-medium {text}") data-status=status.as_str()>
            <span aria-hidden="true" class=format!("h-2 w-2 rounded-full {dot}")></span>
            {status.as_str()}
        </span>
    }
}
