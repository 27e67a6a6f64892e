//! The SQLite and PostgreSQL schemas stay in step: the same migrations, in the same order,
//! leave the same tables with the same columns (nullability included) on both backends.

use pergola_core::testing::postgres_admin_url;
use sqlx::{Connection, Executor, PgConnection, Row, SqliteConnection};
use std::collections::BTreeSet;
use std::path::Path;

/// (table, column, nullable)
type Schema = BTreeSet<(String, String, bool)>;

/// Indexes created by name (not those behind PRIMARY KEY / UNIQUE constraints):
/// (table, index, unique, partial). A partial unique index enforces a rule (one live API
/// token per name), so it must exist on both backends.
type Indexes = BTreeSet<(String, String, bool, bool)>;

fn migration_names(dir: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migration_names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, migration_names("postgres"), "a migration was added to one backend only");
}

async fn sqlite_schema() -> (Schema, Indexes) {
    let dir = std::env::temp_dir().join(format!("pergola-schema-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/pergola.db", dir.display());
    drop(pergola_core::connect(&url).await.unwrap());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT m.name AS t, p.name AS c, p.\"notnull\" AS nn, p.pk AS pk
         FROM sqlite_master m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let index_rows = sqlx::query(
        "SELECT m.tbl_name AS t, m.name AS i, l.\"unique\" AS u, l.partial AS p
         FROM sqlite_master m, pragma_index_list(m.tbl_name) l
         WHERE m.type = 'index' AND m.sql IS NOT NULL AND l.name = m.name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    let _ = std::fs::remove_dir_all(dir);
    let columns = rows
        .iter()
        .map(|r| {
            // SQLite lets a primary key column be NULL unless it says NOT NULL; PostgreSQL never.
            let nullable = r.get::<i64, _>("nn") == 0 && r.get::<i64, _>("pk") == 0;
            (r.get("t"), r.get("c"), nullable)
        })
        .collect();
    let indexes = index_rows
        .iter()
        .map(|r| (r.get("t"), r.get("i"), r.get::<i64, _>("u") == 1, r.get::<i64, _>("p") == 1))
        .collect();
    (columns, indexes)
}

async fn postgres_schema() -> (Schema, Indexes) {
    let admin_url = postgres_admin_url();
    let name = format!("pergola_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("PostgreSQL must be running");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    drop(pergola_core::connect(&url).await.unwrap());
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, is_nullable::text AS n
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let index_rows = sqlx::query(
        "SELECT t.relname::text AS t, c.relname::text AS i, ix.indisunique AS u, ix.indpred IS NOT NULL AS p
         FROM pg_index ix
         JOIN pg_class c ON c.oid = ix.indexrelid
         JOIN pg_class t ON t.oid = ix.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = 'public' AND t.relname NOT LIKE '_sqlx%'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ix.indexrelid)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.ok();
    let columns = rows.iter().map(|r| (r.get("t"), r.get("c"), r.get::<String, _>("n") == "YES")).collect();
    let indexes = index_rows.iter().map(|r| (r.get("t"), r.get("i"), r.get("u"), r.get("p"))).collect();
    (columns, indexes)
}

#[tokio::test]
async fn both_backends_end_with_the_same_tables_and_columns() {
    let (sqlite, sqlite_indexes) = sqlite_schema().await;
    let (postgres, postgres_indexes) = postgres_schema().await;
    assert!(
        sqlite_indexes.contains(&("api_tokens".into(), "api_tokens_live_name".into(), true, true)),
        "{sqlite_indexes:?}"
    );
    assert_eq!(sqlite_indexes, postgres_indexes, "the named indexes differ");
    assert!(sqlite.iter().any(|(t, c, _)| t == "stages" && c == "grace_secs"), "{sqlite:?}");
    let only_sqlite: Vec<_> = sqlite.difference(&postgres).collect();
    let only_postgres: Vec<_> = postgres.difference(&sqlite).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "schemas differ\n only on SQLite: {only_sqlite:?}\n only on PostgreSQL: {only_postgres:?}"
    );
}

/// Stages a server made before names had a search key (migration 0011) are found by a search
/// in any case, beyond ASCII, once a server of this version has connected: `name_key` is
/// filled on connect. Here a stage's key is taken away, as those stages had none.
async fn stages_made_before_name_keys_are_found_after_a_restart(url: &str) {
    use pergola_core::{ManualClock, Services};
    use pergola_domain::{StageQuery, StageType};
    let services = |store| Services::new(store, std::sync::Arc::new(ManualClock::new(chrono::Utc::now())));
    let s = services(pergola_core::connect(url).await.unwrap());
    s.prepare_first_run(Some(("admin", "admin-password-1"))).await.unwrap();
    let admin = s.acting(s.sign_in("admin", "admin-password-1", "127.0.0.1").await.unwrap());
    let project = admin.create_project("Old", None).await.unwrap().id;
    admin.create_stage(&project, "École d'été", StageType::Dev, Some("ecole")).await.unwrap();
    drop((admin, s));
    let forget = "UPDATE stages SET name_key = NULL";
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.unwrap();
        assert_eq!(conn.execute(forget).await.unwrap().rows_affected(), 1);
        conn.close().await.ok();
    } else {
        let mut conn = PgConnection::connect(url).await.unwrap();
        assert_eq!(conn.execute(forget).await.unwrap().rows_affected(), 1);
        conn.close().await.ok();
    }

    let s = services(pergola_core::connect(url).await.unwrap());
    let admin = s.acting(s.sign_in("admin", "admin-password-1", "127.0.0.1").await.unwrap());
    let search = |text: &'static str| {
        let admin = admin.clone();
        let project = project.clone();
        async move {
            let query = StageQuery { search: Some(text.into()), ..Default::default() };
            let page = admin.stage_page(&project, &query).await.unwrap();
            page.stages.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    for text in ["ÉCOLE", "école d'é", "ecole"] {
        assert_eq!(search(text).await, ["ecole"], "search {text:?}");
    }

    // A rolling update: while this server runs, an older one (which knows no `name_key`)
    // renames that stage and makes another. The purge sweep gives both their key.
    admin.create_stage(&project, "Ärzte", StageType::Dev, Some("aerzte")).await.unwrap();
    let old_server = [
        "UPDATE stages SET name = 'Übung' WHERE stage_id = 'ecole'",
        "UPDATE stages SET name_key = NULL WHERE stage_id = 'aerzte'",
    ];
    for sql in old_server {
        if url.starts_with("sqlite:") {
            let mut conn = SqliteConnection::connect(url).await.unwrap();
            assert_eq!(conn.execute(sql).await.unwrap().rows_affected(), 1);
            conn.close().await.ok();
        } else {
            let mut conn = PgConnection::connect(url).await.unwrap();
            assert_eq!(conn.execute(sql).await.unwrap().rows_affected(), 1);
            conn.close().await.ok();
        }
    }
    assert!(search("ÜBUNG").await.is_empty() && search("ÄRZTE").await.is_empty());
    assert_eq!(s.fill_name_keys().await.unwrap(), 2);
    assert_eq!(search("ÜBUNG").await, ["ecole"]);
    assert!(search("ÉCOLE").await.is_empty(), "the old name's key is gone");
    assert_eq!(search("ÄRZTE").await, ["aerzte"]);
    assert_eq!(s.fill_name_keys().await.unwrap(), 0, "every key is now its name's");
}

#[tokio::test]
async fn sqlite_fills_name_keys_on_connect() {
    let dir = std::env::temp_dir().join(format!("pergola-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    stages_made_before_name_keys_are_found_after_a_restart(&format!("sqlite://{}/pergola.db", dir.display())).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_fills_name_keys_on_connect() {
    let admin_url = postgres_admin_url();
    let name = format!("pergola_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.expect("PostgreSQL must be running");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    stages_made_before_name_keys_are_found_after_a_restart(&format!("{base}/{name}")).await;
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.ok();
}
