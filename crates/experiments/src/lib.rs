//! Experiments: one binary per report table, printing the project's figures beside the
//! report's. (Being built: see the open issues.)
