//! savedmodel
