//! A name field and an ID field where the ID follows the name (derived by the domain's
//! `derive_id`, the function the server uses) until the user edits the ID.

use leptos::prelude::*;
use pergola_domain::{derive_id, validate_id, IdKind};

#[derive(Clone, Copy)]
pub struct DerivedId {
    pub kind: IdKind,
    pub name: RwSignal<String>,
    pub id: RwSignal<String>,
    pub edited: RwSignal<bool>,
}

impl DerivedId {
    pub fn new(kind: IdKind) -> Self {
        Self {
            kind,
            name: RwSignal::new(String::new()),
            id: RwSignal::new(String::new()),
            edited: RwSignal::new(false),
        }
    }

    /// The user typed a name: the ID follows unless it was edited.
    pub fn set_name(&self, name: String) {
        if !self.edited.get_untracked() {
            let derived = if name.trim().is_empty() { String::new() } else { derive_id(self.kind, &name) };
            self.id.set(derived);
        }
        self.name.set(name);
    }

    /// The user typed an ID: from now on it no longer follows the name.
    pub fn set_id(&self, id: String) {
        self.edited.set(true);
        self.id.set(id);
    }

    /// Why the current ID is invalid, checked in the browser with the server's own rules.
    pub fn local_error(&self) -> Option<String> {
        let id = self.id.get();
        let id = id.trim();
        (!id.is_empty()).then(|| validate_id(self.kind, id).err().map(|e| e.message)).flatten()
    }

    pub fn reset(&self) {
        self.name.set(String::new());
        self.id.set(String::new());
        self.edited.set(false);
    }
}
