# One image for every orderflow process: the four workers, the simulator
# and orderctl. Built in two stages so the runtime image holds only the
# binaries (no TLS or other C libraries are linked: lapin and reqwest are
# built without TLS).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p orderflow-worker -p downstream-sim -p orderctl \
 && mkdir /out \
 && cp target/release/inventory-worker target/release/payment-worker \
       target/release/shipping-worker target/release/reconciler \
       target/release/downstream-sim target/release/orderctl /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# Health and metrics (ORDERFLOW_LISTEN); the simulator listens on 7070.
EXPOSE 9100 7070
ENTRYPOINT ["/usr/local/bin/orderctl"]
