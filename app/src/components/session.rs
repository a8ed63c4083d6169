//! Who is signed in, read once per page on the server from the session cookie. Server
//! components read it here; islands get what they need of it as props, and a sign-in or
//! sign-out reloads the page so that every part of it is rendered for the new session.

use domain::siws::SignedIn;
use leptos::prelude::*;

use crate::errors::AppError;
use crate::functions::auth::current_session;

#[derive(Clone, Copy)]
pub struct Session {
    pub state: Resource<Result<Option<SignedIn>, AppError>>,
}

impl Session {
    /// Who is signed in; `None` when no one is, or the session could not be read.
    pub async fn signed_in(&self) -> Option<SignedIn> {
        self.state.await.ok().flatten()
    }
}

pub fn provide_session() {
    let state = Resource::new(|| (), |_| current_session());
    provide_context(Session { state });
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
