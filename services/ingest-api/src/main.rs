use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = beckon_runtime::init_telemetry("ingest-api");
    let config = ingest_api::Config::from_env().context("Failed to read the configuration")?;
    let app = ingest_api::Application::build(config)
        .await
        .context("Failed to start the gateway")?;
    app.run_until_stopped(beckon_runtime::shutdown_token())
        .await
}
