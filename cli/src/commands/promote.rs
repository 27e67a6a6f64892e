//! `pergola promote`, `pergola diff stage`, `pergola create stage --from`.

use super::{segment, stage_path};
use crate::client::{Client, Failure};
use crate::output::Printer;
use pergola_domain::logs::escape_controls;
use pergola_domain::wire::{Duplication, Promotion};
use pergola_domain::{shown, Release, Stage, StageComparison};
use std::io::{BufRead, IsTerminal, Write};

pub fn diff(client: &Client, out: &Printer, project: &str, a: &str, b: &str) -> Result<(), Failure> {
    let comparison: StageComparison = client.get(&format!("{}/compare/{}", stage_path(project, a)?, segment(b)?))?;
    out.one(&comparison, || describe(&comparison))
}

pub fn promote(client: &Client, out: &Printer, project: &str, from: &str, to: &str, yes: bool) -> Result<(), Failure> {
    if !yes {
        // Shows what will change, then asks (only a person at a terminal can answer).
        let path = format!("{}/compare/{}", stage_path(project, from)?, segment(to)?);
        let comparison: StageComparison = client.get(&path)?;
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(format!(
                "promoting '{from}' to '{to}' needs a confirmation: run it in a terminal, or pass --yes."
            )));
        }
        eprintln!("{}", describe(&comparison));
        eprint!("Deploy {} to '{to}'? [y/N] ", escape_controls(&comparison.from.runs()));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::new(format!("cannot read stdin: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Failure::new("not promoted.".into()));
        }
    }
    let release: Release = client.post_json_waiting(
        &format!("{}/promote", stage_path(project, from)?),
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
    let stage: Stage = client.post(&format!("{}/duplicate", stage_path(project, from)?), &copy)?;
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

/// The differences, a line each ("what changes on B if it became like A"). Each line is escaped:
/// names, versions and settings' values are the server's text, shown on the terminal — also
/// before the confirmation a promotion asks for, where a value holding escapes could otherwise
/// rewrite what the reader is about to agree to.
fn describe(c: &StageComparison) -> String {
    let (a, b) = (&c.from, &c.to);
    let mut lines = vec![format!("{} -> {}", a.id, b.id)];
    if c.is_same() {
        lines.push("  no difference: same build, components, configuration, type and grace period".to_owned());
        return escaped(&lines);
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
    escaped(&lines)
}

/// `lines`, each escaped (a line break inside one is escaped too: it stays one line), joined.
fn escaped(lines: &[String]) -> String {
    lines.iter().map(|l| escape_controls(l)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::describe;
    use pergola_domain::{compare, ComponentKind, ComponentSide, ConfigSide, StageSide, StageType};

    fn side(id: &str, build: i64, version: &str, value: &str) -> StageSide {
        StageSide {
            id: id.to_owned(),
            name: id.to_owned(),
            stage_type: StageType::Qa,
            grace_secs: 60,
            release: Some(1),
            build: Some(build),
            version: Some(version.to_owned()),
            components: vec![ComponentSide { name: format!("{id}\u{1b}[1m"), kind: ComponentKind::Service }],
            config: vec![ConfigSide {
                key: "GREETING\u{202e}".to_owned(),
                value: Some(value.to_owned()),
                secret: false,
                secret_digest: None,
            }],
        }
    }

    #[test]
    fn the_differences_shown_before_a_promotion_are_escaped() {
        let from = side("dev", 2, "2.0\u{1b}]0;title\u{7}", "hello\u{1b}[3A\nDeploy nothing? y");
        let shown = describe(&compare(from, side("qa", 1, "1.0", "hi")));
        assert!(!shown.contains('\x1b') && !shown.contains('\x07') && !shown.contains('\u{202e}'), "{shown:?}");
        assert!(shown.contains("GREETING\\u{202e}: hello\\u{1b}[3A\\u{a}Deploy nothing? y -> hi"), "{shown}");
        assert!(shown.contains("release #1 (build 2, 2.0\\u{1b}]0;title\\u{7})"), "{shown}");
        assert_eq!(shown.lines().count(), 5, "one line per difference: {shown}");
    }
}
