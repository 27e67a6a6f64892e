//! A few places per key, counted: how the server bounds what one user or one address may hold
//! at once (a user's open live streams, an address's password checks waiting for a hashing
//! slot, a client's connections). A [`Place`] is given back when it is dropped; a key whose places are all given back
//! is forgotten, so the map holds only the keys that hold something now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counted places per key (cheap to clone: clones share the counts).
#[derive(Clone, Debug, Default)]
pub struct CountedPlaces {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One place of a key in [`CountedPlaces`], given back when dropped.
#[derive(Debug)]
pub struct Place {
    key: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// The counts, whatever a thread that panicked holding them left (they stay consistent: each
/// change is one step).
fn counts(counts: &Mutex<HashMap<String, usize>>) -> MutexGuard<'_, HashMap<String, usize>> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CountedPlaces {
    /// A place for `key`, or `None` when it holds `limit` already.
    pub fn take(&self, key: &str, limit: usize) -> Option<Place> {
        let mut counts = counts(&self.counts);
        let count = counts.entry(key.to_owned()).or_default();
        if *count >= limit {
            if *count == 0 {
                counts.remove(key);
            }
            return None;
        }
        *count += 1;
        Some(Place { key: key.to_owned(), counts: self.counts.clone() })
    }

    /// How many places `key` holds.
    pub fn held_by(&self, key: &str) -> usize {
        counts(&self.counts).get(key).copied().unwrap_or(0)
    }

    /// How many keys hold a place.
    pub fn keys(&self) -> usize {
        counts(&self.counts).len()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = counts(&self.counts);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_limit_and_others_still_get_theirs() {
        let places = CountedPlaces::default();
        let held: Vec<Place> = (0..3).map(|_| places.take("203.0.113.9", 3).expect("a place")).collect();
        assert!(places.take("203.0.113.9", 3).is_none(), "a fourth place refused");
        assert_eq!(places.held_by("203.0.113.9"), 3);
        let other = places.take("198.51.100.7", 3).expect("another key has its places");
        drop(held);
        assert_eq!(places.held_by("203.0.113.9"), 0);
        assert_eq!(places.keys(), 1, "a key with nothing held is forgotten");
        assert!(places.take("203.0.113.9", 3).is_some(), "the key may take places again");
        drop(other);
        assert_eq!(places.keys(), 0);
    }

    #[test]
    fn a_limit_of_none_leaves_nothing_behind() {
        let places = CountedPlaces::default();
        assert!(places.take("someone", 0).is_none());
        assert_eq!(places.keys(), 0);
    }

    #[test]
    fn places_are_given_back_from_other_threads_too() {
        let places = CountedPlaces::default();
        let held: Vec<Place> = (0..8).map(|_| places.take("user", 8).unwrap()).collect();
        std::thread::scope(|scope| {
            for place in held {
                scope.spawn(move || drop(place));
            }
        });
        assert_eq!(places.keys(), 0);
    }
}
