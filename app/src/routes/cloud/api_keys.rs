//! The API keys panel of `/cloud`: make a key for a script (its secret shown once), see when
//! each was last used, revoke it.
//!
//! The page renders the keys into the island as a prop and the island reads them again after
//! each change: an island's own resource inside the page's suspense could hydrate against
//! HTML that had not streamed in yet (a hydration error seen in the browser tests).

use domain::api_key::ApiKey;
use leptos::prelude::*;

use crate::components::supply::ErrorNote;
use crate::errors::AppError;
use crate::functions::cloud::{create_api_key, my_api_keys, revoke_api_key};
use crate::routes::cloud::time_text;

#[island]
pub fn ApiKeysPanel(keys: Vec<ApiKey>) -> impl IntoView {
    let keys = RwSignal::new(Ok::<_, AppError>(keys));
    let reload = move || {
        leptos::task::spawn_local(async move {
            keys.set(my_api_keys().await);
        });
    };
    let name = RwSignal::new(String::new());
    let secret = RwSignal::new(None::<String>);
    let problem = RwSignal::new(None::<String>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let wanted = name.get_untracked();
        leptos::task::spawn_local(async move {
            match create_api_key(wanted).await {
                Ok(created) => {
                    secret.set(Some(created.secret));
                    problem.set(None);
                    name.set(String::new());
                }
                Err(e) => problem.set(Some(e.to_string())),
            }
            reload();
        });
    };
    let revoke = move |id: String| {
        leptos::task::spawn_local(async move {
            if let Err(e) = revoke_api_key(id).await {
                problem.set(Some(e.to_string()));
            }
            reload();
        });
    };
    view! {
        <section class="panel">
            <h2>"API keys"</h2>
            <p class="muted">"Scripts and agents call the JSON API (" <a href="/api/v1/openapi.json">"OpenAPI document"</a> ") with " <code>"Authorization: Bearer gck_…"</code> ". A key can do what you can, except make or revoke keys."</p>
            <form class="inline" on:submit=create>
                <input aria-label="Key name" placeholder="what will use it?" data-testid="api-key-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                <button class="btn btn-ghost" type="submit" data-testid="create-api-key">"Make a key"</button>
            </form>
            {move || secret.get().map(|s| view! {
                <div class="ticket">
                    <p>"Your new key (shown only now; only its hash is kept):"</p>
                    <pre class="command"><code data-testid="api-key-secret">{s}</code></pre>
                </div>
            })}
            {move || problem.get().map(|p| view! { <p class="notice error" data-testid="api-key-error">{p}</p> })}
            {move || match keys.get() {
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No keys yet."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="table">
                            <thead><tr><th>"Name"</th><th>"Key"</th><th>"Made"</th><th>"Last used"</th><th>"State"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|k| {
                                    let id = k.id.clone();
                                    let active = k.revoked_at.is_none();
                                    view! {
                                        <tr data-testid="api-key-row">
                                            <td>{k.name}</td>
                                            <td><code>{format!("{}…", k.prefix)}</code></td>
                                            <td>{time_text(Some(k.created_at.0))}</td>
                                            <td>{time_text(k.last_used_at.map(|t| t.0))}</td>
                                            <td>{if active { format!("works until {}", k.expires_at.to_rfc3339()) } else { "revoked".to_owned() }}</td>
                                            <td>{active.then(|| view! {
                                                <button class="btn btn-danger" data-testid="revoke-api-key" on:click=move |_| revoke(id.clone())>"Revoke"</button>
                                            })}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(error) => view! { <ErrorNote error /> }.into_any(),
                }}
        </section>
    }
}
