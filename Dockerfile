# Builds bin/worker and bin/submit into a small image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/worker ./cmd/worker \
 && CGO_ENABLED=0 go build -trimpath -o /out/submit ./cmd/submit

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/submit /usr/local/bin/
COPY examples /examples
ENTRYPOINT ["/usr/local/bin/worker"]
