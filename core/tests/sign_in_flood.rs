//! A flood of sign-ins, in a test process of its own: the password checks a process computes
//! at once are few (as many as it has CPUs) and shared by everything in it, so the flood would
//! make the other tests' sign-ins wait past their 3 s and be told to come back (429).

use pergola_core::testing::{Env, ADMIN_PASSWORD};
use pergola_domain::ErrorKind;

#[macro_use]
mod support;

all_backends!(a_flood_of_sign_ins_with_made_up_usernames_is_answered_and_leaves_the_server_working);

/// Hostile: sign-ins with usernames nobody has (each a password hash to compute) at once, each
/// from an address of its own (no throttle holds them back).
async fn a_flood_of_sign_ins_with_made_up_usernames_is_answered_and_leaves_the_server_working(env: &Env) {
    let mut flood = Vec::new();
    for n in 0..40 {
        let s = env.services.clone();
        flood.push(tokio::spawn(async move {
            let (name, address) = (format!("nobody-{n}"), format!("192.0.2.{n}"));
            s.sign_in(&name, "some-password-1", &address).await
        }));
    }
    let (mut checked, mut busy) = (0, 0);
    for attempt in flood {
        match attempt.await.unwrap().unwrap_err().kind {
            ErrorKind::Unauthenticated => checked += 1,
            // Told to come back when the server checks too many at once.
            ErrorKind::TooManyRequests => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(checked >= 1, "the flood is answered: {checked} checked, {busy} told to come back");
    // Every place among the hashes was given back: the administrator signs in (once the other
    // backend's flood, in this process too, has passed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match env.services.sign_in("admin", ADMIN_PASSWORD, "10.0.0.7").await {
            Ok(_) => break,
            Err(e) if e.kind == ErrorKind::TooManyRequests && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
