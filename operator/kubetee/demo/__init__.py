"""``kubetee demo``: the whole KubeTEE story on the local cluster, step by step."""
