//! Writing a converted model folder atomically (temporary folder + rename).
//! (being written)
