//! PKCS#11 implementation of [`super::Hsm`] over cryptoki. (Being written.)
