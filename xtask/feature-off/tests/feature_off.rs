//! Every built-in scheme, in a build of `rxon` without any transport feature, fails with
//! an `Unsupported` error that names the feature to enable.

use rxon::{ErrorKind, Scheme, TransportConfig, TransportRegistry};

#[test]
fn every_builtin_scheme_names_its_missing_feature() {
    let off: Vec<Scheme> = Scheme::ALL
        .iter()
        .copied()
        .filter(|s| !s.is_enabled())
        .collect();
    assert!(!off.is_empty(), "this build has no transport feature on");
    assert_eq!(
        off.len(),
        Scheme::ALL.len(),
        "every built-in scheme is off in this build: {off:?}"
    );
    let registry = TransportRegistry::new();
    for scheme in off {
        let config = TransportConfig::new(format!("{scheme}://h"), "w", "t");
        let err = registry
            .create(&config)
            .err()
            .unwrap_or_else(|| panic!("{scheme}:// built a transport with its feature off"));
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{scheme}: {err}");
        let needle = format!("`{}` feature", scheme.feature());
        assert!(err.message().contains(&needle), "{scheme}: {err}");
        let err = rxon::create_transport(&config.url, "w", "t", Default::default())
            .err()
            .unwrap_or_else(|| panic!("{scheme}:// built a transport with its feature off"));
        assert!(err.message().contains(&needle), "{scheme}: {err}");
    }
}
