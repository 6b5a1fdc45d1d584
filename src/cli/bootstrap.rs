//! What a start prints for its operator.

use crate::App;

/// Shows the default project's key, once, on the start that created it.
pub fn print_bootstrap(app: &App) {
    let addr = app.local_addr();
    if let Some((project, key)) = &app.bootstrap {
        println!(
            "Created the default project {} ({}).",
            project.name, project.id
        );
        println!("Its API key, shown only this once: {}", key.plaintext);
        println!(
            "Use it as: curl -H 'X-API-Key: {}' http://{addr}/platform/v1/whatsapp/phone_numbers",
            key.plaintext
        );
    }
}
