//! What the store-backed test files share.

/// Runs each `case(&Env)` twice, as `sqlite::case` and `postgres::case`, each on a fresh
/// store of its own.
macro_rules! all_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = pergola_core::testing::sqlite_env().await;
                    super::$case(&env).await;
                    env.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let env = pergola_core::testing::postgres_env().await;
                    super::$case(&env).await;
                    env.cleanup().await;
                }
            )*
        }
    };
}
