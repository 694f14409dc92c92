//! The password of a PKCS#12 bundle: the first line of standard input
//! (`--password-stdin`), or asked twice on the terminal without echo when standard input
//! is one.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};

/// The password for `what`, from standard input or the terminal.
pub fn read(from_stdin: bool, what: &str) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(password.strip_suffix('\r').unwrap_or(password).to_string());
    }
    let no_terminal = "cannot ask for the password on the terminal: give it on standard input with --password-stdin";
    if !std::io::stdin().is_terminal() {
        bail!("standard input is no terminal to ask for the password on: pipe the password in with --password-stdin");
    }
    let first =
        rpassword::prompt_password(format!("Password for {what}: ")).context(no_terminal)?;
    let second = rpassword::prompt_password("The same password again: ").context(no_terminal)?;
    if first != second {
        bail!("the two passwords differ: nothing written");
    }
    Ok(first)
}
