//! `/explorer/blocks`: the hourly reward blocks, newest first; `/explorer/blocks/:number`: one
//! block's emission and every device's score and reward, a page at a time and as CSV.

use domain::explorer::{list_path, BlockDetail};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{short, when, ExplorerNav, LoadError, Pager};
use crate::functions::explorer::{load_block, load_blocks};

const LIST: &str = "/explorer/blocks";

#[component]
pub fn BlocksPage() -> impl IntoView {
    let query = use_query_map();
    let after = move || query.read().get("after").unwrap_or_default();
    let page = Resource::new(after, load_blocks);
    view! {
        <Title text="Blocks · Explorer" />
        <ExplorerNav />
        <section class="hero">
            <h1>"Reward blocks"</h1>
            <p class="lede">{format!("Every UTC hour closes a block: its emission goes {}% to GPU and {}% to CPU devices by score (hardware × uptime × connectivity), to verified devices with a {}-hour streak.", domain::rewards::GPU_SHARE_PERCENT, 100 - domain::rewards::GPU_SHARE_PERCENT, domain::rewards::STREAK_HOURS)}</p>
        </section>
        <section class="panel">
            <Suspense fallback=|| view! { <p class="muted">"Loading blocks…"</p> }>
                {move || page.get().map(|result| match result {
                    Ok(page) if page.rows.is_empty() => view! { <p class="empty">"No block has closed yet."</p> }.into_any(),
                    Ok(page) => view! {
                        <div class="table-wrap">
                            <table class="data" data-testid="block-list">
                                <thead><tr><th>"Block"</th><th>"Hour (UTC)"</th><th class="num">"Emission"</th><th class="num">"Paid"</th><th class="num">"Devices scored"</th><th class="num">"Rewarded"</th></tr></thead>
                                <tbody>
                                    {page.rows.iter().map(|b| view! {
                                        <tr data-testid="block-row">
                                            <td><a href=format!("/explorer/blocks/{}", b.number)>{b.number}</a></td>
                                            <td>{when(b.starts_at_ms())}</td>
                                            <td class="num">{b.emission.to_string()}</td>
                                            <td class="num">{b.paid.to_string()}</td>
                                            <td class="num">{b.devices_scored}</td>
                                            <td class="num">{b.devices_rewarded}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                        <Pager
                            first=(!after().is_empty()).then(|| LIST.to_owned())
                            previous=None
                            next=page.next.clone().map(|n| list_path(LIST, &[("after", n)]))
                            last=None
                        />
                    }.into_any(),
                    Err(error) => view! { <LoadError error /> }.into_any(),
                })}
            </Suspense>
        </section>
    }
}

#[component]
pub fn BlockPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let number = move || params.read().get("number").unwrap_or_default();
    let after = move || query.read().get("after").unwrap_or_default();
    let block = Resource::new(move || (number(), after()), |(n, a)| load_block(n, a));
    view! {
        <Title text="Block · Explorer" />
        <ExplorerNav />
        <Suspense fallback=|| view! { <p class="muted">"Loading the block…"</p> }>
            {move || block.get().map(|result| match result {
                Ok(detail) => view! { <BlockView detail first_page=after().is_empty() /> }.into_any(),
                Err(error) => view! { <LoadError error /> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn BlockView(detail: BlockDetail, first_page: bool) -> impl IntoView {
    let b = detail.block;
    let path = format!("{LIST}/{}", b.number);
    let next = detail
        .lines
        .next
        .clone()
        .map(|id| list_path(&path, &[("after", id)]));
    view! {
        <section class="hero">
            <p class="muted"><a href=LIST>"← All blocks"</a></p>
            <h1 data-testid="block-number">{format!("Block {}", b.number)}</h1>
            <p class="lede">{format!("The hour from {}", when(b.starts_at_ms()))}</p>
        </section>
        <section class="panel">
            <dl class="facts">
                <dt>"Emission"</dt><dd data-testid="block-emission">{b.emission.to_string()}</dd>
                <dt>"GPU pool / CPU pool"</dt><dd>{format!("{} / {}", detail.gpu_pool, detail.cpu_pool)}</dd>
                <dt>"Paid"</dt><dd>{b.paid.to_string()}</dd>
                <dt>"Devices scored / rewarded"</dt><dd>{format!("{} / {}", b.devices_scored, b.devices_rewarded)}</dd>
                <dt>"Closed"</dt><dd>{when(b.closed_at_ms)}</dd>
            </dl>
            <p><a class="btn" href=format!("/api/v1/explorer/blocks/{}/lines.csv", b.number) data-testid="block-csv" download>"Download every line (CSV)"</a></p>
        </section>
        <section class="panel">
            <h2>"Scores and rewards"</h2>
            <div class="table-wrap">
                <table class="data" data-testid="block-lines">
                    <thead><tr><th>"Device"</th><th>"Kind"</th><th>"Provider"</th><th class="num">"Score"</th><th class="num">"Share"</th><th class="num">"Reward"</th><th>"Not rewarded because"</th></tr></thead>
                    <tbody>
                        {detail.lines.rows.into_iter().map(|l| view! {
                            <tr>
                                <td><a href=format!("/explorer/devices/{}", l.device_id)>{l.device_id.clone()}</a></td>
                                <td>{l.kind.as_str()}</td>
                                <td><a href=format!("/explorer/wallets/{}", l.provider)>{short(&l.provider)}</a></td>
                                <td class="num">{l.score}</td>
                                <td class="num">{format!("{}.{:04}%", l.share_ppm / 10_000, l.share_ppm % 10_000)}</td>
                                <td class="num">{l.reward.to_string()}</td>
                                <td>{l.ineligible.unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
            <Pager first=(!first_page).then(|| path.clone()) previous=None next last=None />
        </section>
    }
}
