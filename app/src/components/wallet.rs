//! "Connect wallet": finds Wallet-Standard Solana wallets in the page (Phantom, Solflare,
//! Backpack, …) through `leptos-solana`, has the chosen one sign the server's Sign-In With Solana
//! message, and reloads the page once the server has started a session, so that every part of
//! it is rendered for the signed-in wallet.

use domain::siws::SignedIn;
use leptos::prelude::*;

use crate::functions::auth::sign_out;
use crate::routes::reload_page;

const NO_WALLET: &str =
    "No Solana wallet found in this browser. Install Phantom, Solflare or Backpack, then reload this page.";

/// The wallet control; `signed_in` is the session the server rendered the page for.
#[island]
pub fn WalletButton(signed_in: Option<SignedIn>) -> impl IntoView {
    let wallet_names = RwSignal::new(Vec::<String>::new());
    let picking = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);

    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        browser::discover(wallet_names);
    });

    let connect = move |name: String| {
        busy.set(true);
        picking.set(false);
        error.set(None);
        leptos::task::spawn_local(async move {
            match sign_in_with(&name).await {
                Ok(_) => reload_page(),
                Err(message) => {
                    busy.set(false);
                    error.set(Some(message));
                }
            }
        });
    };
    let on_connect = move |_| {
        let names = wallet_names.get_untracked();
        match names.as_slice() {
            [] => error.set(Some(NO_WALLET.to_owned())),
            [only] => connect(only.clone()),
            _ => picking.update(|p| *p = !*p),
        }
    };
    let on_sign_out = move |_| {
        leptos::task::spawn_local(async move {
            match sign_out().await {
                Ok(()) => reload_page(),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };

    let signed_out_view = move || {
        view! {
            <button class="btn btn-primary" data-testid="connect-wallet" disabled=move || busy.get() on:click=on_connect>
                {move || if busy.get() {
                    view! { "Check your wallet…" }.into_any()
                } else {
                    view! { "Connect" <span class="wide-only">" wallet"</span> }.into_any()
                }}
            </button>
            <Show when=move || picking.get()>
                <ul class="wallet-menu" data-testid="wallet-menu">
                    <For each=move || wallet_names.get() key=|name| name.clone() let:name>
                        <li>
                            <button class="wallet-option" data-testid="wallet-option" on:click={
                                let name = name.clone();
                                move |_| connect(name.clone())
                            }>{name.clone()}</button>
                        </li>
                    </For>
                </ul>
            </Show>
        }
    };

    view! {
        <div class="wallet">
            {match signed_in {
                Some(signed_in) => view! {
                    <span class="wallet-address" data-testid="wallet-address" title=signed_in.wallet.to_string()>
                        {signed_in.wallet.short()}
                    </span>
                    <button class="btn btn-ghost" data-testid="sign-out" on:click=on_sign_out>
                        "Sign out"
                    </button>
                }
                .into_any(),
                None => signed_out_view().into_any(),
            }}
            {move || error.get().map(|message| view! {
                <p class="wallet-error" role="alert" data-testid="wallet-error">{message}</p>
            })}
        </div>
    }
}

async fn sign_in_with(wallet_name: &str) -> Result<SignedIn, String> {
    #[cfg(feature = "hydrate")]
    {
        browser::sign_in_with(wallet_name).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        Err(format!(
            "{wallet_name} can only be reached from the browser"
        ))
    }
}

/// Has the wallet in this browser that holds `address` sign `transaction` (wire format) for
/// `chain`, through its Wallet-Standard `signTransaction`; the signed bytes come back.
pub async fn sign_transaction(
    address: &str,
    chain: &str,
    transaction: &[u8],
) -> Result<Vec<u8>, String> {
    #[cfg(feature = "hydrate")]
    {
        browser::sign_transaction(address, chain, transaction).await
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (address, chain, transaction);
        Err("wallets can only be reached from the browser".into())
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::RefCell;

    use domain::siws::SignInMessage;
    use domain::siws::SignedIn;
    use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
    use leptos::prelude::*;
    use leptos_solana::discovery::{self, DiscoveryHandle};
    use leptos_solana::features;
    use leptos_solana::wallet::{Wallet, WalletAccount, FEATURE_SIGN_IN};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;

    use crate::functions::auth::{sign_in, sign_in_challenge};

    thread_local! {
        static FOUND: RefCell<Vec<Wallet>> = const { RefCell::new(Vec::new()) };
        // Kept for the page's lifetime: dropping it would stop late wallets from registering.
        static DISCOVERY: RefCell<Option<DiscoveryHandle>> = const { RefCell::new(None) };
    }

    pub fn discover(names: RwSignal<Vec<String>>) {
        if DISCOVERY.with(|d| d.borrow().is_some()) {
            return;
        }
        let started = discovery::start(move |wallet: Wallet| {
            let name = wallet.name();
            let is_new = FOUND.with(|found| {
                let mut found = found.borrow_mut();
                let known = found.iter().any(|w| w.name() == name);
                if !known {
                    found.push(wallet);
                }
                !known
            });
            if is_new {
                names.update(|n| n.push(name));
            }
        });
        if let Ok(handle) = started {
            DISCOVERY.with(|d| *d.borrow_mut() = Some(handle));
        }
    }

    pub async fn sign_transaction(
        address: &str,
        chain: &str,
        transaction: &[u8],
    ) -> Result<Vec<u8>, String> {
        let wallets = FOUND.with(|found| found.borrow().clone());
        for wallet in wallets {
            // Silent: a wallet this page is already connected to answers without a prompt.
            let Ok(accounts) = features::connect(&wallet, true).await else {
                continue;
            };
            if let Some(account) = accounts.into_iter().find(|a| a.address() == address) {
                return features::sign_transaction(&wallet, &account, chain, transaction)
                    .await
                    .map_err(|e| format!("{} did not sign the deposit: {e}", wallet.name()));
            }
        }
        Err(format!(
            "no wallet in this browser holds {address}; connect it and try again"
        ))
    }

    pub async fn sign_in_with(name: &str) -> Result<SignedIn, String> {
        let wallet = FOUND
            .with(|found| found.borrow().iter().find(|w| w.name() == name).cloned())
            .ok_or_else(|| format!("{name} is no longer available; reload the page"))?;
        let accounts = features::connect(&wallet, false)
            .await
            .map_err(|e| format!("{name} did not connect: {e}"))?;
        let account = accounts
            .into_iter()
            .next()
            .ok_or_else(|| format!("{name} shared no account"))?;
        let message = sign_in_challenge(account.address())
            .await
            .map_err(|e| e.to_string())?;
        // `solana:signIn` where the wallet has it: the wallet writes the message from its
        // fields and checks the domain against this page's origin itself, so a phishing page
        // cannot pass another site's sign-in off as its own. `signMessage` otherwise.
        let (signed, signature) = if has_feature(&wallet, FEATURE_SIGN_IN) {
            sign_in_feature(&wallet, &account, &message)
                .await
                .map_err(|e| format!("{name} did not sign in: {e}"))?
        } else {
            let signature = features::sign_message(&wallet, &account, message.as_bytes())
                .await
                .map_err(|e| format!("{name} did not sign the sign-in message: {e}"))?;
            (message, signature)
        };
        sign_in(signed, domain::siws::signature_to_base58(&signature))
            .await
            .map_err(|e| e.to_string())
    }

    fn has_feature(wallet: &Wallet, id: &str) -> bool {
        Reflect::get(&wallet.features(), &JsValue::from_str(id))
            .is_ok_and(|feature| feature.is_object())
    }

    /// Asks the wallet to sign in with the fields of the server's `message` (Wallet Standard
    /// `solana:signIn`); returns the text the wallet signed and the signature. The server
    /// checks that text as it checks a `signMessage` one: it must be the message it issued.
    async fn sign_in_feature(
        wallet: &Wallet,
        account: &WalletAccount,
        message: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let fields = SignInMessage::parse(message).map_err(|e| e.to_string())?;
        let input = Object::new();
        for (key, value) in [
            ("domain", fields.domain.clone()),
            ("address", fields.address.to_string()),
            ("statement", domain::siws::STATEMENT.to_owned()),
            ("uri", fields.uri.clone()),
            ("version", "1".to_owned()),
            ("chainId", fields.chain_id.clone()),
            ("nonce", fields.nonce.as_str().to_owned()),
            ("issuedAt", fields.issued_at.to_string()),
            ("expirationTime", fields.expiration_time.to_string()),
        ] {
            Reflect::set(&input, &JsValue::from_str(key), &JsValue::from_str(&value))
                .map_err(|_| "cannot build the sign-in request".to_owned())?;
        }
        let js_error = |e: JsValue| {
            e.as_string()
                .or_else(|| {
                    Reflect::get(&e, &JsValue::from_str("message"))
                        .ok()
                        .and_then(|m| m.as_string())
                })
                .unwrap_or_else(|| "the wallet refused".to_owned())
        };
        let feature = Reflect::get(&wallet.features(), &JsValue::from_str(FEATURE_SIGN_IN))
            .map_err(js_error)?;
        let sign_in: Function = Reflect::get(&feature, &JsValue::from_str("signIn"))
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "its solana:signIn has no signIn method".to_owned())?;
        let promise: Promise = sign_in
            .call1(&feature, &input)
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "its signIn did not answer a promise".to_owned())?;
        let outputs: Array = JsFuture::from(promise)
            .await
            .map_err(js_error)?
            .dyn_into()
            .map_err(|_| "its signIn did not answer a list".to_owned())?;
        let output = outputs.get(0);
        let bytes = |key: &str| {
            Reflect::get(&output, &JsValue::from_str(key))
                .ok()
                .and_then(|v| v.dyn_into::<Uint8Array>().ok())
                .map(|a| a.to_vec())
                .ok_or_else(|| format!("its signIn answered no {key}"))
        };
        let signed = String::from_utf8(bytes("signedMessage")?)
            .map_err(|_| "it signed a message that is not text".to_owned())?;
        let signer = Reflect::get(&output, &JsValue::from_str("account"))
            .ok()
            .and_then(|a| Reflect::get(&a, &JsValue::from_str("address")).ok())
            .and_then(|a| a.as_string());
        if signer.as_deref() != Some(account.address().as_str()) {
            return Err(format!(
                "it signed in with another account ({}) than the one it connected",
                signer.unwrap_or_else(|| "none named".into())
            ));
        }
        Ok((signed, bytes("signature")?))
    }
}
