async fn report() {
    #[::lockattr::__private::linkme::distributed_slice(::lockattr::__private::SITES)]
    #[linkme(crate = ::lockattr::__private::linkme)]
    static __LOCKATTR_SITE: ::lockattr::__private::LockSite = ::lockattr::__private::LockSite {
        template: "report",
        ttl: ::core::time::Duration::from_millis(600000u64),
        policy: ::lockattr::__private::Policy::Skip,
        min_hold: ::core::time::Duration::from_millis(0u64),
        renew: false,
        schedule: ::core::option::Option::Some(
            ::lockattr::__private::Schedule::every(
                    ::core::time::Duration::from_millis(3600000u64),
                )
                .at(::core::time::Duration::from_millis(1800000u64)),
        ),
        backend: ::core::option::Option::None,
        function: ::core::concat!(::core::module_path!(), "::", "report"),
        file: ::core::file!(),
        line: ::core::line!(),
    };
    let __lockattr_key = ::lockattr::__private::build_key(
        "report",
        "r",
        ::core::format_args!(r"eport"),
    );
    ::lockattr::__private::run_skippable(
            &__LOCKATTR_SITE,
            __lockattr_key,
            async move {
                #[allow(
                    unknown_lints,
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::let_unit_value,
                    clippy::unreachable,
                    clippy::empty_loop,
                    clippy::needless_return
                )]
                if false {
                    let __lockattr_return: () = loop {};
                    return __lockattr_return;
                }
                build_report().await
            },
        )
        .await
}
