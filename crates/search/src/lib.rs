//! Grid search: runs the trials of a hyperparameter grid in parallel, keeps every result,
//! and prints the reports' tables. (Being built: see the open issues.)
