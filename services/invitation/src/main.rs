use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = beckon_runtime::init_telemetry("invitation");
    let config = invitation::Config::from_env().context("Failed to read the configuration")?;
    invitation::run(config, beckon_runtime::shutdown_token()).await
}
