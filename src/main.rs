use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pgx::interrupt::install();
    let cli = pgx::cli::Cli::parse();
    match pgx::app::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.downcast_ref::<pgx::error::Interrupted>().is_some() => ExitCode::from(130),
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = pgx::error::hint_of(&err) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}
