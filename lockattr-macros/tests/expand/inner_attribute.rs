///outer
async fn quiet() -> Result<(), LockError> {
    #![allow(unused)]
    #[::lockattr::__private::linkme::distributed_slice(::lockattr::__private::SITES)]
    #[linkme(crate = ::lockattr::__private::linkme)]
    static __LOCKATTR_SITE: ::lockattr::__private::LockSite = ::lockattr::__private::LockSite {
        template: "quiet",
        ttl: ::core::time::Duration::from_millis(30000u64),
        policy: ::lockattr::__private::Policy::Error,
        min_hold: ::core::time::Duration::from_millis(0u64),
        renew: false,
        schedule: ::core::option::Option::None,
        backend: ::core::option::Option::None,
        function: ::core::concat!(::core::module_path!(), "::", "quiet"),
        file: ::core::file!(),
        line: ::core::line!(),
    };
    let __lockattr_key = ::lockattr::__private::build_key(
        "quiet",
        "q",
        ::core::format_args!(r"uiet"),
    );
    ::lockattr::__private::run_fallible(
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
                    let __lockattr_return: Result<(), LockError> = loop {};
                    return __lockattr_return;
                }
                let x = 1;
                Ok(())
            },
        )
        .await
}
