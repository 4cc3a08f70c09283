//! Models: MLPs and CNNs written as Burn modules, described as a readable list of layers,
//! with a Keras-style `summary()`. (Being built: see the open issues.)
