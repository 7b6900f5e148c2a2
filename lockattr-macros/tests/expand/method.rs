pub async fn run(&self, job: &Job, job_id: u64) -> Option<u32> {
    #[my_lockattr::__private::linkme::distributed_slice(my_lockattr::__private::SITES)]
    #[linkme(crate = my_lockattr::__private::linkme)]
    static __LOCKATTR_SITE: my_lockattr::__private::LockSite = my_lockattr::__private::LockSite {
        template: "shard:<self.shard>/<job.id>/<job_id>",
        ttl: ::core::time::Duration::from_millis(60000u64),
        policy: my_lockattr::__private::Policy::Retry {
            retries: 3u32,
            backoff: ::core::time::Duration::from_millis(200u64),
        },
        min_hold: ::core::time::Duration::from_millis(10000u64),
        renew: true,
        schedule: ::core::option::Option::None,
        backend: ::core::option::Option::Some("pg"),
        function: ::core::concat!(::core::module_path!(), "::", "run"),
        file: ::core::file!(),
        line: ::core::line!(),
    };
    let __lockattr_key = {
        let (self_shard, job_id, _ob_id) = (
            my_lockattr::__private::KeyValue(&self.shard),
            my_lockattr::__private::KeyValue(&job.id),
            my_lockattr::__private::KeyValue(&job_id),
        );
        my_lockattr::__private::build_key(
            "shard:<self.shard>/<job.id>/<job_id>",
            "s",
            ::core::format_args!(r"hard:{self_shard}/{job_id}/{_ob_id}"),
        )
    };
    my_lockattr::__private::run_skippable(
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
                    let __lockattr_return: Option<u32> = loop {};
                    return __lockattr_return;
                }
                Some(1)
            },
        )
        .await
}
