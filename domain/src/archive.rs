//! What a build's archive may hold, judged on names alone: the CLI checks it before it packs a
//! directory, the server again when it unpacks an upload (where it counts).

use std::path::{Component, Path};

/// Whether a symlink `depth` directories below the build's root whose target is `link` points
/// inside the build: relative, its `..` only at its start and no more of them than `depth`.
/// `a/../b` is refused even where it would land inside: where it leads depends on what `a` is
/// (a link to a directory elsewhere, say).
pub fn link_stays_inside(link: &Path, depth: usize) -> bool {
    let mut up = 0;
    let mut descended = false;
    if link.as_os_str().is_empty() {
        return false;
    }
    for c in link.components() {
        match c {
            Component::ParentDir if !descended => up += 1,
            Component::ParentDir => return false,
            Component::CurDir => {}
            Component::Normal(_) => descended = true,
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    up <= depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_may_point_only_inside() {
        for (link, depth, inside) in [
            ("x", 0, true),
            ("./x/y", 0, true),
            ("../x", 1, true),
            ("../../x", 1, false),
            ("../x", 0, false),
            ("/etc", 3, false),
            ("a/../../x", 2, false),
            ("a/../b", 2, false),
            ("..", 1, true),
            ("", 1, false),
        ] {
            assert_eq!(link_stays_inside(Path::new(link), depth), inside, "{link} at depth {depth}");
        }
    }
}
