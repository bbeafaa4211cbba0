//! The expected input of an entry, from its task, architecture and handle.

use crate::Entry;
use std::fmt;

/// What a model takes, as far as its metadata tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `[B, H, W, 3]` float32 RGB in [0, 1] (TF Hub's image convention); `size` is H = W when the
    /// handle or the architecture fixes it, `None` when it comes from the model's signature.
    Image { size: Option<u32> },
    /// Magenta-style stylization: a content image `[1, H, W, 3]` of any size and a style image
    /// `[1, style, style, 3]`, both float32 RGB in [0, 1].
    StyleTransfer { style: u32 },
    /// A batch of strings `[B]` (one sentence each).
    Text,
    /// Anything else, described in words.
    Other(String),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Image { size: Some(s) } => {
                write!(f, "images [B, {s}, {s}, 3] float32 RGB in [0, 1]")
            }
            Input::Image { size: None } => write!(
                f,
                "images [B, H, W, 3] float32 RGB in [0, 1] (H, W from the model's signature)"
            ),
            Input::StyleTransfer { style } => write!(
                f,
                "content image [1, H, W, 3] (any size) and style image [1, {style}, {style}, 3], float32 RGB in [0, 1]"
            ),
            Input::Text => f.write_str("a batch of strings [B] (one sentence each)"),
            Input::Other(s) => f.write_str(s),
        }
    }
}

/// Input sizes that appear as a handle segment (`mobilenet_v2_100_224`, `cait_m36_384`).
const SIZES: &[u32] = &[
    96, 128, 160, 192, 224, 240, 256, 260, 288, 299, 300, 320, 331, 380, 384, 456, 480, 512, 528,
    600,
];

/// Default input sizes of architectures (tfhub.dev's network-architecture tags).
const DEFAULT_SIZE: &[(&str, u32)] = &[
    ("inception-v3", 299),
    ("inception-resnet-v2", 299),
    ("inception-v1", 224),
    ("inception-v2", 224),
    ("mobilenet-v1", 224),
    ("mobilenet-v2", 224),
    ("mobilenet-v3", 224),
    ("nasnet-a-large", 331),
    ("pnasnet-5-large", 331),
    ("nasnet-a-mobile", 224),
    ("efficientnet-b0", 224),
    ("efficientnet-b1", 240),
    ("efficientnet-b2", 260),
    ("efficientnet-b3", 300),
    ("efficientnet-b4", 380),
    ("efficientnet-b5", 456),
    ("efficientnet-b6", 528),
    ("efficientnet-b7", 600),
    ("resnet50-v2", 224),
    ("resnet101-v2", 224),
    ("resnet152-v2", 224),
    ("resnet-v1-50", 224),
    ("resnet-v1-101", 224),
    ("resnet-v1-152", 224),
    ("resnet-v2-50", 224),
    ("resnet-v2-101", 224),
    ("resnet-v2-152", 224),
];

fn size_from_handle(handle: &str) -> Option<u32> {
    handle
        .split(['/', '_', '-'])
        .filter_map(|t| t.parse::<u32>().ok())
        .rfind(|n| SIZES.contains(n))
}

pub(crate) fn input_of(e: &Entry) -> Input {
    let h = e.handle.as_str();
    if h.contains("arbitrary-image-stylization-v1-256") {
        if e.format == "lite" {
            return Input::Other(if h.contains("/prediction/") {
                "style image [1, 256, 256, 3] float32 RGB in [0, 1] -> style bottleneck [1, 1, 1, 100]".into()
            } else {
                "content image [1, 384, 384, 3] float32 RGB in [0, 1] and a style bottleneck [1, 1, 1, 100]".into()
            });
        }
        return Input::StyleTransfer { style: 256 };
    }
    if matches!(e.format.as_str(), "lite" | "tfjs" | "coral") {
        return Input::Other(format!(
            "{} deployment: see its documentation at {}",
            e.format_name(),
            e.url
        ));
    }
    let image_task = [
        "image-classification",
        "image-feature-vector",
        "image-classification-logits",
        "image-classifier",
    ]
    .iter()
    .any(|t| e.has_task(t));
    if image_task {
        let size = size_from_handle(h).or_else(|| {
            e.architecture
                .iter()
                .find_map(|a| DEFAULT_SIZE.iter().find(|(n, _)| n == a).map(|(_, s)| *s))
        });
        return Input::Image { size };
    }
    if e.has_task("image-style-transfer") {
        return Input::StyleTransfer { style: 256 };
    }
    if e.has_task("text-embedding") {
        let token_ids = ["transformer", "bert", "albert", "electra", "roberta"]
            .iter()
            .any(|a| e.has_architecture(a))
            && !h.contains("universal-sentence-encoder");
        if token_ids {
            return Input::Other(
                "token ids from the matching preprocessing model (input_word_ids, input_mask, input_type_ids [B, seq] int32)"
                    .into(),
            );
        }
        return Input::Text;
    }
    Input::Other(format!("see the model's documentation at {}", e.url))
}

#[cfg(test)]
mod tests {
    use super::size_from_handle;

    #[test]
    fn sizes_from_handles() {
        assert_eq!(
            size_from_handle("google/imagenet/mobilenet_v2_100_224/classification/5"),
            Some(224)
        );
        assert_eq!(
            size_from_handle("google/imagenet/mobilenet_v2_035_96/feature_vector/5"),
            Some(96)
        );
        assert_eq!(size_from_handle("sayakpaul/cait_m36_384/1"), Some(384));
        assert_eq!(
            size_from_handle("google/imagenet/resnet_v2_152/classification/5"),
            None
        );
        assert_eq!(
            size_from_handle("google/imagenet/inception_v3/classification/5"),
            None
        );
    }
}
