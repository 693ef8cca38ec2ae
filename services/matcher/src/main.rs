use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = beckon_runtime::init_telemetry("matcher");
    let config = matcher::Config::from_env().context("Failed to read the configuration")?;
    matcher::run(config, beckon_runtime::shutdown_token()).await
}
