async fn flush(tenant: &str) -> Result<(), AppError> {
    #[::lockattr::__private::linkme::distributed_slice(::lockattr::__private::SITES)]
    #[linkme(crate = ::lockattr::__private::linkme)]
    static __LOCKATTR_SITE: ::lockattr::__private::LockSite = ::lockattr::__private::LockSite {
        template: "flush:<tenant>",
        ttl: ::core::time::Duration::from_millis(30000u64),
        policy: ::lockattr::__private::Policy::Skip,
        min_hold: ::core::time::Duration::from_millis(0u64),
        renew: false,
        schedule: ::core::option::Option::None,
        backend: ::core::option::Option::None,
        function: ::core::concat!(::core::module_path!(), "::", "flush"),
        file: ::core::file!(),
        line: ::core::line!(),
    };
    let __lockattr_key = {
        let (tenant,) = (::lockattr::__private::KeyValue(&tenant),);
        ::lockattr::__private::build_key(
            "flush:<tenant>",
            "f",
            ::core::format_args!(r"lush:{tenant}"),
        )
    };
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
                    let __lockattr_return: Result<(), AppError> = loop {};
                    return __lockattr_return;
                }
                do_flush(tenant).await
            },
        )
        .await
}
