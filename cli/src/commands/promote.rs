//! `pergola promote`, `pergola diff stage`, `pergola create stage --from`.

use super::stage_path;
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::wire::{Duplication, Promotion};
use pergola_domain::{shown, Release, Stage, StageComparison};
use std::io::{BufRead, IsTerminal, Write};

pub fn diff(client: &Client, out: &Printer, project: &str, a: &str, b: &str) -> Result<(), Failure> {
    let comparison: StageComparison = client.get(&format!("{}/compare/{b}", stage_path(project, a)))?;
    out.one(&comparison, || describe(&comparison))
}

pub fn promote(client: &Client, out: &Printer, project: &str, from: &str, to: &str, yes: bool) -> Result<(), Failure> {
    if !yes {
        // Shows what will change, then asks (only a person at a terminal can answer).
        let comparison: StageComparison = client.get(&format!("{}/compare/{to}", stage_path(project, from)))?;
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(format!(
                "promoting '{from}' to '{to}' needs a confirmation: run it in a terminal, or pass --yes."
            )));
        }
        eprintln!("{}", describe(&comparison));
        eprint!("Deploy {} to '{to}'? [y/N] ", comparison.from.runs());
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Failure::new("not promoted.".into()));
        }
    }
    let release: Release = client.post_json_waiting(
        &format!("{}/promote", stage_path(project, from)),
        &Promotion { to: to.to_owned() },
        &format!("Promoting '{from}' to '{to}'"),
    )?;
    out.one(&release, || {
        format!(
            "Build {} of stage '{from}' promoted to stage '{to}' as its release #{}.",
            release.build_number, release.number
        )
    })
}

pub fn duplicate(client: &Client, out: &Printer, project: &str, from: &str, copy: Duplication) -> Result<(), Failure> {
    let (deploy, storage) = (copy.deploy, copy.with_storage);
    let stage: Stage = client.post(&format!("{}/duplicate", stage_path(project, from)), &copy)?;
    out.one(&stage, || {
        let built = match (deploy, storage) {
            (true, true) => ", with its current build and its storage",
            (true, false) => ", with its current build",
            (false, true) => ", with its storage",
            (false, false) => "",
        };
        format!(
            "Stage '{}' created in project '{}' as a copy of '{from}' ({}{built}).",
            stage.id,
            stage.project_id,
            stage.stage_type.as_str()
        )
    })
}

/// The differences, a line each ("what changes on B if it became like A").
fn describe(c: &StageComparison) -> String {
    let (a, b) = (&c.from, &c.to);
    let mut lines = vec![format!("{} -> {}", a.id, b.id)];
    if c.is_same() {
        lines.push("  no difference: same build, components, configuration, type and grace period".to_owned());
        return lines.join("\n");
    }
    if c.type_differs {
        lines.push(format!("  type           {} -> {}", a.stage_type.label(), b.stage_type.label()));
    }
    if c.build_differs {
        lines.push(format!("  runs           {} -> {}", a.runs(), b.runs()));
    }
    let added = c.components_added.iter().map(|x| format!("+ {} ({})", x.name, x.kind.as_str()));
    let removed = c.components_removed.iter().map(|x| format!("- {} ({})", x.name, x.kind.as_str()));
    let all: Vec<String> = added.chain(removed).collect();
    for (i, line) in all.iter().enumerate() {
        lines.push(format!("  {:<14} {line}", if i == 0 { "components" } else { "" }));
    }
    for (i, d) in c.config.iter().enumerate() {
        let secrets = matches!((&d.from, &d.to), (Some(x), Some(y)) if x.secret && y.secret);
        let change = if secrets {
            format!("{}: (secret, different)", d.key)
        } else {
            format!("{}: {} -> {}", d.key, shown(d.from.as_ref()), shown(d.to.as_ref()))
        };
        lines.push(format!("  {:<14} {change}", if i == 0 { "configuration" } else { "" }));
    }
    if c.grace_differs {
        lines.push(format!("  grace period   {} s -> {} s", a.grace_secs, b.grace_secs));
    }
    lines.join("\n")
}
