//! `rumor`: the admin command-line program (see `admin::Cli`).

#[tokio::main]
async fn main() {
    let cli = client::cli::parse_args::<admin::Cli>();
    if let Err(error) = admin::run(cli).await {
        eprintln!("rumor: error: {error:#}");
        std::process::exit(1);
    }
}
