//! `emoji`: the catalogue service (`emojivoto.v1.EmojiService`), answering `ListAll` and
//! `FindByShortcode` from a fixed list. It never fails; in `mesh stat` it is the 100% row.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpListener;

use super::proto::{
    self, Emoji, FindByShortcodeRequest, FindByShortcodeResponse, ListAllEmojiRequest,
    ListAllEmojiResponse,
};
use super::{BoxError, BoxFuture};

/// `mesh emojivoto emoji` / `cargo run --example emojivoto -- emoji`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Port to serve gRPC on (plain HTTP/2, no TLS).
    #[arg(long, env = "GRPC_PORT", default_value_t = 8081)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// Binds `--bind:--port` and serves until the process is stopped.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let listener = super::bind("emoji", args.bind, args.port).await?;
    serve(listener).await
}

/// Serves the emoji service on an already-bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(listener: TcpListener) -> Result<(), BoxError> {
    super::serve(listener, EmojiServer::new()).await
}

/// Every emoji the demo knows, `(shortcode, unicode)`, in the order the page lists them: the
/// original emojivoto's list. Multi-code-point emojis are spelled with escapes so the variation
/// selectors and zero-width joiners stay visible.
pub const EMOJIS: &[(&str, &str)] = &[
    (":joy:", "😂"),
    (":sunglasses:", "😎"),
    (":doughnut:", "🍩"),
    (":stuck_out_tongue_winking_eye:", "😜"),
    (":money_mouth_face:", "🤑"),
    (":flushed:", "😳"),
    (":mask:", "😷"),
    (":nerd_face:", "🤓"),
    (":ghost:", "👻"),
    (":skull_and_crossbones:", "\u{2620}\u{fe0f}"),
    (":heart_eyes_cat:", "😻"),
    (":hear_no_evil:", "🙉"),
    (":see_no_evil:", "🙈"),
    (":speak_no_evil:", "🙊"),
    (":boy:", "👦"),
    (":girl:", "👧"),
    (":man:", "👨"),
    (":woman:", "👩"),
    (":older_man:", "👴"),
    (":policeman:", "👮"),
    (":guardsman:", "💂"),
    (":construction_worker:", "👷"),
    (":prince:", "🤴"),
    (":princess:", "👸"),
    (":man_in_tuxedo:", "🤵"),
    (":bride_with_veil:", "👰"),
    (":mrs_claus:", "🤶"),
    (":santa:", "🎅"),
    (":turkey:", "🦃"),
    (":rabbit:", "🐇"),
    (":no_good:", "🙅"),
    (":ok_woman:", "🙆"),
    (":raising_hand:", "🙋"),
    (":bow:", "🙇"),
    (":man_facepalming:", "\u{1f926}\u{200d}\u{2642}\u{fe0f}"),
    (":woman_shrugging:", "\u{1f937}\u{200d}\u{2640}\u{fe0f}"),
    (":massage:", "💆"),
    (":walking:", "🚶"),
    (":running:", "🏃"),
    (":dancer:", "💃"),
    (":man_dancing:", "🕺"),
    (":dancers:", "👯"),
    (":rainbow:", "🌈"),
    (":skier:", "\u{26f7}\u{fe0f}"),
    (":golfing_man:", "\u{1f3cc}\u{fe0f}\u{200d}\u{2642}\u{fe0f}"),
    (":surfing_man:", "\u{1f3c4}\u{200d}\u{2642}\u{fe0f}"),
    (
        ":basketball_man:",
        "\u{26f9}\u{fe0f}\u{200d}\u{2642}\u{fe0f}",
    ),
    (":biking_man:", "\u{1f6b4}\u{200d}\u{2642}\u{fe0f}"),
    (":point_up_2:", "👆"),
    (":vulcan_salute:", "🖖"),
    (":metal:", "🤘"),
    (":call_me_hand:", "🤙"),
    (":thumbsup:", "👍"),
    (":wave:", "👋"),
    (":clap:", "👏"),
    (":raised_hands:", "🙌"),
    (":pray:", "🙏"),
    (":dog:", "🐶"),
    (":cat2:", "🐈"),
    (":pig:", "🐷"),
    (":hatching_chick:", "🐣"),
    (":snail:", "🐌"),
    (":bacon:", "🥓"),
    (":pizza:", "🍕"),
    (":taco:", "🌮"),
    (":burrito:", "🌯"),
    (":ramen:", "🍜"),
    (":champagne:", "🍾"),
    (":tropical_drink:", "🍹"),
    (":beer:", "🍺"),
    (":tumbler_glass:", "🥃"),
    (":world_map:", "\u{1f5fa}\u{fe0f}"),
    (":beach_umbrella:", "\u{1f3d6}\u{fe0f}"),
    (":mountain_snow:", "\u{1f3d4}\u{fe0f}"),
    (":camping:", "\u{1f3d5}\u{fe0f}"),
    (":house:", "🏠"),
    (":flight_departure:", "🛫"),
    (":rocket:", "🚀"),
    (":star2:", "🌟"),
    (":sun_behind_small_cloud:", "\u{1f324}\u{fe0f}"),
    (":cloud_with_rain:", "\u{1f327}\u{fe0f}"),
    (":fire:", "🔥"),
    (":jack_o_lantern:", "🎃"),
    (":balloon:", "🎈"),
    (":tada:", "🎉"),
    (":trophy:", "🏆"),
    (":iphone:", "📱"),
    (":pager:", "📟"),
    (":fax:", "📠"),
    (":bulb:", "💡"),
    (":money_with_wings:", "💸"),
    (":crystal_ball:", "🔮"),
    (":underage:", "🔞"),
    (":interrobang:", "\u{2049}\u{fe0f}"),
    (":100:", "💯"),
    (":checkered_flag:", "🏁"),
    (":crossed_swords:", "\u{2694}\u{fe0f}"),
    (":floppy_disk:", "💾"),
];

// === impl EmojiServer ===

/// The service as a tower `Service<http::Request<B>>`, routing by gRPC method path (what
/// tonic-build generates, by hand).
#[derive(Clone, Debug)]
pub struct EmojiServer {
    catalogue: Arc<[Emoji]>,
}

impl Default for EmojiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl EmojiServer {
    /// A server over [`EMOJIS`].
    pub fn new() -> Self {
        let catalogue = EMOJIS
            .iter()
            .map(|&(shortcode, unicode)| Emoji {
                unicode: unicode.to_owned(),
                shortcode: shortcode.to_owned(),
            })
            .collect();
        Self { catalogue }
    }
}

impl<B> tower::Service<http::Request<B>> for EmojiServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let catalogue = self.catalogue.clone();
        Box::pin(async move {
            Ok(match req.uri().path() {
                proto::path::LIST_ALL => {
                    proto::serve_unary(req, |_: ListAllEmojiRequest| async move {
                        Ok(ListAllEmojiResponse {
                            list: catalogue.to_vec(),
                        })
                    })
                    .await
                }
                proto::path::FIND_BY_SHORTCODE => {
                    proto::serve_unary(req, |r: FindByShortcodeRequest| async move {
                        let emoji = catalogue.iter().find(|e| e.shortcode == r.shortcode);
                        Ok(FindByShortcodeResponse {
                            emoji: emoji.cloned(),
                        })
                    })
                    .await
                }
                other => proto::unimplemented(other),
            })
        })
    }
}
